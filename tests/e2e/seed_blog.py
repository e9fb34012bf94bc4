"""The admin curl commands of the seed blog (shared/seeds/001_…txt), exactly as written.

Only two things are substituted when they run: the admin port (9180, in case the test runs the
gateway on another port) and ``api.openai.com:443`` (the upstream node), which points at a
local address instead.
"""

UPSTREAM = """curl "http://127.0.0.1:9180/apisix/admin/upstreams/1" -H "X-API-KEY: edd1c9f034335f136f87ad84b625c8f1" -X PUT -d '
{
  "name": "OpenAI API upstream",
  "desc": "Agregar el dominio de la API de OpenAI como upstream",
  "type": "roundrobin",
  "scheme": "https",
  "nodes": {
    "api.openai.com:443": 1
  }
}'"""

PLUGIN_CONFIG = """curl http://127.0.0.1:9180/apisix/admin/plugin_configs/1 -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -X PUT -d '
{
   "plugins":{
      "proxy-rewrite":{
         "uri":"/v1/completions",
         "host":"api.openai.com",
         "headers":{
            "Authorization":"Clave de API de OpenAI",
            "Content-Type":"application/json"
         }
      }
   }
}'"""

ROUTE = """curl -i http://127.0.0.1:9180/apisix/admin/routes/1 \\
-H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -X PUT -d '
{
   "name":"Ruta de completado de la API de OpenAI",
   "desc":"Crear una nueva ruta en APISIX para el endpoint de completado de la API de OpenAI",
   "methods":[
      "POST"
   ],
   "uri":"/openai/product/desc",
   "upstream_id":"1",
   "plugin_config_id":1
}'"""

CONSUMER = """curl http://127.0.0.1:9180/apisix/admin/consumers -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -X PUT -d '
{
    "username": "consumer1",
    "plugins": {
        "basic-auth": {
            "username": "username1",
            "password": "password1"
        }
    }
}'"""

PLUGIN_CONFIG_BASIC_AUTH = """curl http://127.0.0.1:9180/apisix/admin/plugin_configs/1 -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -X PUT -d '
{
   "plugins":{
      "proxy-rewrite":{
         "uri":"/v1/completions",
         "host":"api.openai.com",
         "headers":{
            "Authorization":"Clave de API de OpenAI",
            "Content-Type":"application/json"
         }
      },
      "basic-auth":{}
   }
}'"""

PLUGIN_CONFIG_LIMIT_COUNT = """curl http://127.0.0.1:9180/apisix/admin/plugin_configs/1 -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -X PUT -d '
{
   "plugins":{
      "proxy-rewrite":{
         "uri":"/v1/completions",
         "host":"api.openai.com",
         "headers":{
            "Authorization":"Clave de API de OpenAI",
            "Content-Type":"application/json"
         }
      },
      "basic-auth":{},
      "limit-count":{
         "count":2,
         "time_window":60,
         "rejected_code":403,
         "rejected_msg":"Las solicitudes son demasiado frecuentes, por favor inténtalo de nuevo más tarde.",
         "key_type":"var",
         "key":"remote_addr"
      }
   }
}'"""

PLUGIN_CONFIG_PROXY_CACHE = """curl http://127.0.0.1:9180/apisix/admin/plugin_configs/1 -H 'X-API-KEY: edd1c9f034335f136f87ad84b625c8f1' -X PUT -d '
{
   "plugins":{
      "proxy-rewrite":{
         "uri":"/v1/completions",
         "host":"api.openai.com",
         "headers":{
            "Authorization":"Clave de API de OpenAI",
            "Content-Type":"application/json"
         }
      },
      "basic-auth":{},
      "proxy-cache":{
         "cache_key":[
            "$uri",
            "-cache-id"
         ],
         "cache_method":[
            "POST"
         ],
         "cache_http_status":[
            200
         ],
         "hide_cache_headers":true
      }
   }
}'"""

# In the blog's order, with the status APISIX answers.
ADMIN_COMMANDS = [
    (UPSTREAM, 201),
    (PLUGIN_CONFIG, 201),
    (ROUTE, 201),
    (CONSUMER, 201),
    (PLUGIN_CONFIG_BASIC_AUTH, 200),
    (PLUGIN_CONFIG_LIMIT_COUNT, 200),
    (PLUGIN_CONFIG_PROXY_CACHE, 200),
]


def localise(command: str, admin_port: int, upstream: str) -> str:
    return command.replace("127.0.0.1:9180", f"127.0.0.1:{admin_port}").replace(
        "api.openai.com:443", upstream
    )


# The blog's request to the data plane, with credentials (its later form, `-d \` continued).
PRODUCT_REQUEST_WITH_AUTH = """curl -i -u username1:password1 http://127.0.0.1:9080/openai/product/desc  -X POST -d \\
'{
   "model":"text-davinci-003",
   "prompt":"Escribe una breve descripción del producto para el Apple 13 pro",
   "temperature":0,
   "max_tokens":256
}'"""

# The same request without credentials (the blog's first form, joined onto one command line).
PRODUCT_REQUEST = """curl -i http://127.0.0.1:9080/openai/product/desc  -X POST -d \\
'{
   "model":"text-davinci-003",
   "prompt":"Escribe una breve descripción del producto para el Apple 13 pro",
   "temperature":0,
   "max_tokens":256
}'"""

LIMIT_MESSAGE = "Las solicitudes son demasiado frecuentes, por favor inténtalo de nuevo más tarde."


def localise_proxy(command: str, proxy_port: int) -> str:
    return command.replace("127.0.0.1:9080", f"127.0.0.1:{proxy_port}")
