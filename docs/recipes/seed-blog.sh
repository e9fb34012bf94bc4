#!/usr/bin/env bash
# The seed blog "Potenciando capacidades de AI con Apache APISIX y OpenAI API", against llmgate.
#
#   llmgate fake-upstream --port 8000 &           # stands in for api.openai.com (HTTP and TLS)
#   LLMGATE_ADMIN_KEY=edd1c9f034335f136f87ad84b625c8f1 llmgate serve &
#   bash docs/recipes/seed-blog.sh
#
# ADMIN, PROXY and UPSTREAM may be overridden; the curl commands are the blog's own.
set -euo pipefail
ADMIN=${ADMIN:-http://127.0.0.1:9180}
PROXY=${PROXY:-http://127.0.0.1:9080}
UPSTREAM=${UPSTREAM:-127.0.0.1:8000}   # the blog has api.openai.com:443
KEY=${KEY:-edd1c9f034335f136f87ad84b625c8f1}

step() { printf '\n== %s\n' "$*"; }

step "upstream"
curl -s "$ADMIN/apisix/admin/upstreams/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
curl -s "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
curl -s "$ADMIN/apisix/admin/routes/1" -H "X-API-KEY: $KEY" -X PUT -d '
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

request() {
  curl -s -i "$@" "$PROXY/openai/product/desc" -X POST -d '{
   "model":"text-davinci-003",
   "prompt":"Escribe una breve descripción del producto para el Apple 13 pro",
   "temperature":0,
   "max_tokens":256
}'
  echo
}

step "product description"
request

step "consumer + basic-auth"
curl -s "$ADMIN/apisix/admin/consumers" -H "X-API-KEY: $KEY" -X PUT -d '
{
    "username": "consumer1",
    "plugins": {
        "basic-auth": {
            "username": "username1",
            "password": "password1"
        }
    }
}'
curl -s "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
request
step "with credentials (200)"
request -u username1:password1

step "limit-count: 2 per 60 s, then 403"
curl -s "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
for _ in 1 2 3; do request -u username1:password1 | grep -E "^HTTP|X-RateLimit|error_msg"; done

step "proxy-cache: MISS then HIT"
curl -s "$ADMIN/apisix/admin/plugin_configs/1" -H "X-API-KEY: $KEY" -X PUT -d '
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
for _ in 1 2; do request -u username1:password1 | grep -iE "^HTTP|Apisix-Cache-Status"; done
