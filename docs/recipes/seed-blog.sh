#!/usr/bin/env bash
# The seed blog "Potenciando capacidades de AI con Apache APISIX y OpenAI API", against llmgate.
#
#   .venv/bin/llmgate fake-upstream --port 8000 &    # stands in for api.openai.com (HTTP and TLS)
#   .venv/bin/llmgate serve &                         # prints the generated admin key once
#   KEY=<that key> bash docs/recipes/seed-blog.sh
#
# KEY is the admin key (or LLMGATE_ADMIN_KEY, when you chose one); ADMIN, PROXY and UPSTREAM may
# be overridden.  The curl commands are the blog's own, with -fsS: the script stops at the first
# call that fails, and each data-plane call checks the status the blog expects.
set -euo pipefail
ADMIN=${ADMIN:-http://127.0.0.1:9180}
PROXY=${PROXY:-http://127.0.0.1:9080}
UPSTREAM=${UPSTREAM:-127.0.0.1:8000}   # the blog has api.openai.com:443
KEY=${KEY:-${LLMGATE_ADMIN_KEY:-}}
: "${KEY:?set KEY to the admin key (printed by the first llmgate serve; llmgate admin-key rotate makes a new one)}"

step() { printf '\n== %s\n' "$*"; }

step "upstream"
curl -fsS "$ADMIN/apisix/admin/upstreams/1" -H "X-API-KEY: $KEY" -X PUT -d '
{
  "name": "OpenAI API upstream",
  "desc": "Agregar el dominio de la API de OpenAI como upstream",
  "type": "roundrobin",
  "scheme": "https",
  "nodes": {
    "'"$UPSTREAM"'": 1
  }
}'

step "plugin config: proxy-rewrite"
curl -fsS "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
}'

step "route"
curl -fsS "$ADMIN/apisix/admin/routes/1" -H "X-API-KEY: $KEY" -X PUT -d '
{
   "name":"Ruta de completado de la API de OpenAI",
   "desc":"Crear una nueva ruta en APISIX para el endpoint de completado de la API de OpenAI",
   "methods":[
      "POST"
   ],
   "uri":"/openai/product/desc",
   "upstream_id":"1",
   "plugin_config_id":1
}'

# request STATUS [curl options]: the blog's call; prints the response, stops unless STATUS.
request() {
  local expected=$1 response
  shift
  response=$(curl -sS -i "$@" "$PROXY/openai/product/desc" -X POST -d '{
   "model":"text-davinci-003",
   "prompt":"Escribe una breve descripción del producto para el Apple 13 pro",
   "temperature":0,
   "max_tokens":256
}')
  printf '%s\n' "$response"
  if [[ $response != "HTTP/1.1 $expected "* ]]; then
    echo "expected HTTP $expected, got: ${response%%$'\r'*}" >&2
    exit 1
  fi
}

step "product description"
request 200

step "consumer + basic-auth"
curl -fsS "$ADMIN/apisix/admin/consumers" -H "X-API-KEY: $KEY" -X PUT -d '
{
    "username": "consumer1",
    "plugins": {
        "basic-auth": {
            "username": "username1",
            "password": "password1"
        }
    }
}'
curl -fsS "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
}'
step "without credentials (401)"
request 401
step "with credentials (200)"
request 200 -u username1:password1

step "limit-count: 2 per 60 s, then 403"
curl -fsS "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
}'
for status in 200 200 403; do
  request "$status" -u username1:password1 | grep -E "^HTTP|X-RateLimit|error_msg"
done

step "proxy-cache: MISS then HIT"
curl -fsS "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
}'
for _ in 1 2; do request 200 -u username1:password1 | grep -iE "^HTTP|Apisix-Cache-Status"; done
