"""Which test shows the effect of each config field the admin API accepts.

Read by ``test_field_coverage.py``, which walks every field of every resource model and plugin
config and fails when one is neither here nor in the "Fields without a runtime test" table of
``docs/compatibility.md`` (refused, not applicable, or pending with its owner).

Paths: ``routes.<field>``; ``upstreams.<field>`` (also the fields of an inline ``upstream``);
``consumers``, ``credentials``, ``plugin_configs``; ``plugins.<name>.<field>`` (a plugin's config
on a route, plugin_config or consumer); ``consumer_plugins.<name>.<field>`` (what a consumer or
credential carries for an auth plugin); ``_meta.<field>`` (every plugin's ``_meta``).  Nested
objects and lists of objects continue with a dot.  A refused field maps to the test of its 400.
"""

from __future__ import annotations

# Test modules, to keep the table short.
ROUTE_E2E = "tests/e2e/test_route_conditions.py"
COMPILING = "tests/admin/test_compiling.py"
HANDLER = "tests/proxy/test_handler.py"
UPSTREAM = "tests/proxy/test_upstream.py"
LOADER = "tests/runtime/test_loader.py"
META = "tests/plugin_api/test_plugin_runtime.py"
METRICS = "tests/observability/test_metrics.py"
ACCESS_LOG = "tests/observability/test_access_log.py"
BATCH = "tests/observability/test_batch.py"
BASIC = "tests/plugins/test_basic_auth_runtime.py"
KEY = "tests/plugins/test_key_auth_runtime.py"
RESTRICT = "tests/plugins/test_consumer_restriction_runtime.py"
COUNT = "tests/plugins/test_limit_count_runtime.py"
REQ = "tests/plugins/test_limit_req_runtime.py"
CONN = "tests/plugins/test_limit_conn_runtime.py"
REWRITE = "tests/plugins/test_proxy_rewrite_runtime.py"
CACHE = "tests/plugins/test_proxy_cache_runtime.py"
CORS = "tests/plugins/test_cors_runtime.py"
REQUEST_ID = "tests/plugins/test_request_id_runtime.py"
RESPONSE = "tests/plugins/test_response_rewrite_runtime.py"
FILE_LOG = "tests/plugins/test_file_logger_runtime.py"
HTTP_LOG = "tests/plugins/test_http_logger_runtime.py"
AI_PROXY = "tests/plugins/test_ai_proxy_runtime.py"
AI_OPTIONS = "tests/plugins/test_ai_proxy_options_runtime.py"
AI_MULTI = "tests/plugins/test_ai_proxy_multi_runtime.py"
AI_TARGET = "tests/ai/test_target.py"
AI_PROTOCOLS = "tests/ai/test_protocols.py"
DECORATOR = "tests/plugins/test_ai_prompt_decorator_runtime.py"
TEMPLATE = "tests/plugins/test_ai_prompt_template_runtime.py"
GUARD = "tests/plugins/test_ai_prompt_guard_runtime.py"
BUDGET = "tests/plugins/test_ai_rate_limiting_runtime.py"
SEED_CHAT = "tests/e2e/test_seed_chat.py"
HEALTH_E2E = "tests/e2e/test_upstream_health.py"
HEALTH = "tests/proxy/test_health.py"
PROBE = "tests/proxy/test_probe.py"
CLIENT = "tests/proxy/test_client.py"
CLIENT_CONNECTION = "tests/proxy/test_client_connection.py"
AI_CAPS = "tests/e2e/test_ai_caps.py"
OPENAI_COMPATIBLE = "tests/plugins/test_openai_compatible_runtime.py"
BUDGETS_E2E = "tests/e2e/test_token_budgets.py"
RESOURCES_E2E = "tests/e2e/test_apisix_resources.py"
SERVICE = "test_route_with_only_service_id_is_served_by_the_service"
GLOBAL = "test_global_rule_plugins_run_on_every_route_before_the_routes"
GROUP = "test_consumer_group_limit_count_applies_to_its_consumers"
TLS = "tests/e2e/test_tls.py"
MTLS = "tests/runtime/test_upstream_tls.py"
PROXY_WIRE = "tests/e2e/test_proxy_plugins_wire.py"


def _t(module: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{module}::{name}" for name in names)


EFFECT_TESTS: dict[str, tuple[str, ...]] = {
    # --- routes -------------------------------------------------------------------------------
    "routes.id": _t(RESTRICT, "test_route_id"),
    "routes.name": _t(METRICS, "test_plugin_replies_are_counted_with_consumer_and_no_node"),
    "routes.uri": _t(ROUTE_E2E, "test_a_config_that_stops_compiling_keeps_its_last_good_version"),
    "routes.uris": _t(ROUTE_E2E, "test_uris_methods_hosts_and_status"),
    "routes.priority": _t(ROUTE_E2E, "test_vars_select_routes"),
    "routes.methods": _t(ROUTE_E2E, "test_uris_methods_hosts_and_status")
    + _t(HANDLER, "test_methods_filter"),
    "routes.host": _t(ROUTE_E2E, "test_uris_methods_hosts_and_status"),
    "routes.hosts": _t(ROUTE_E2E, "test_uris_methods_hosts_and_status"),
    "routes.remote_addr": _t(ROUTE_E2E, "test_remote_addrs_restrict"),
    "routes.remote_addrs": _t(ROUTE_E2E, "test_remote_addrs_restrict"),
    "routes.vars": _t(ROUTE_E2E, "test_vars_select_routes"),
    "routes.filter_func": _t(COMPILING, "test_route_writes_that_would_not_compile_are_400"),
    "routes.timeout": _t(HEALTH_E2E, "test_a_route_read_timeout_of_1s_gives_504_in_under_2s"),
    "routes.timeout.connect": _t(UPSTREAM, "test_the_route_timeout_overrides_the_upstream_one"),
    "routes.timeout.send": _t(UPSTREAM, "test_the_route_timeout_overrides_the_upstream_one"),
    "routes.timeout.read": _t(HEALTH_E2E, "test_a_route_read_timeout_of_1s_gives_504_in_under_2s"),
    "routes.plugins": _t(META, "test_filter_gates_a_route_plugin"),
    "routes.plugin_config_id": _t(META, "test_filter_gates_a_plugin_config_plugin"),
    "routes.upstream": _t(HANDLER, "test_forwards_path_query_headers_and_body"),
    "routes.upstream_id": _t(REWRITE, "test_seed_blog_plugin_config"),
    "routes.service_id": _t(RESOURCES_E2E, SERVICE),
    "routes.enable_websocket": _t(COMPILING, "test_route_writes_that_would_not_compile_are_400"),
    "routes.status": _t(ROUTE_E2E, "test_uris_methods_hosts_and_status")
    + _t(LOADER, "test_disabled_route_is_not_served"),
    # --- upstreams (and inline upstreams) -------------------------------------------------------
    "upstreams.id": _t(REWRITE, "test_seed_blog_plugin_config"),
    "upstreams.nodes": _t(UPSTREAM, "test_weighted_round_robin"),
    "upstreams.nodes.host": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority"),
    "upstreams.nodes.port": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority"),
    "upstreams.nodes.weight": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority"),
    "upstreams.nodes.priority": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority"),
    "upstreams.type": _t(UPSTREAM, "test_chash_sends_one_key_to_one_node"),
    "upstreams.hash_on": _t(UPSTREAM, "test_chash_sends_one_key_to_one_node")
    + _t(ROUTE_E2E, "test_chash_hashes_a_repeated_header_whole"),
    "upstreams.key": _t(UPSTREAM, "test_chash_sends_one_key_to_one_node")
    + _t(COMPILING, "test_a_chash_key_that_hashes_nothing_is_400"),
    "upstreams.scheme": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority")
    + _t(COMPILING, "test_refused_resource_fields"),
    "upstreams.pass_host": _t(UPSTREAM, "test_pass_host_modes"),
    "upstreams.upstream_host": _t(
        UPSTREAM, "test_pass_host_modes", "test_the_tls_server_name_follows_pass_host"
    ),
    "upstreams.tls": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority"),
    "upstreams.tls.verify": _t(ROUTE_E2E, "test_upstream_scheme_tls_verify_and_node_priority"),
    "upstreams.timeout": _t(UPSTREAM, "test_the_route_timeout_overrides_the_upstream_one"),
    "upstreams.timeout.connect": _t(UPSTREAM, "test_timeout_is_504_json"),
    "upstreams.timeout.send": _t(
        CLIENT_CONNECTION, "test_send_timeout_when_the_node_stops_reading"
    ),
    "upstreams.timeout.read": _t(UPSTREAM, "test_timeout_is_504_json"),
    "upstreams.retries": _t(
        UPSTREAM, "test_retries_reach_the_next_node", "test_a_post_is_never_sent_twice"
    ),
    "upstreams.retry_timeout": _t(UPSTREAM, "test_retry_timeout_bounds_the_retries"),
    "upstreams.keepalive_pool": _t(
        HEALTH_E2E, "test_keepalive_pool_requests_size_and_idle_timeout"
    ),
    "upstreams.keepalive_pool.size": _t(
        CLIENT, "test_idle_connections_close_after_idle_timeout_and_beyond_size"
    ),
    "upstreams.keepalive_pool.idle_timeout": _t(
        CLIENT,
        "test_idle_connections_close_after_idle_timeout_and_beyond_size",
        "test_idle_timeout_zero_keeps_nothing",
    ),
    "upstreams.keepalive_pool.requests": _t(
        CLIENT, "test_keepalive_requests_closes_a_connection_after_that_many"
    ),
    "upstreams.tls.client_cert": _t(MTLS, "test_an_inline_client_certificate_is_presented"),
    "upstreams.tls.client_key": _t(MTLS, "test_an_inline_client_certificate_is_presented"),
    "upstreams.tls.client_cert_id": _t(MTLS, "test_a_client_ssl_is_presented_by_id"),
    # --- consumers, credentials, plugin_configs -------------------------------------------------
    "consumers.username": _t(KEY, "test_key_in_header"),
    "consumers.name": _t(COMPILING, "test_refused_resource_fields"),
    "consumers.labels": _t(BASIC, "test_credential_of_a_consumer"),
    "consumers.group_id": _t(RESTRICT, "test_consumer_group_id"),
    "consumers.plugins": _t(META, "test_consumer_plugins_honour_meta"),
    "credentials.id": _t(BASIC, "test_credential_of_a_consumer"),
    "credentials.plugins": _t(BASIC, "test_credential_of_a_consumer"),
    "plugin_configs.id": _t(META, "test_filter_gates_a_plugin_config_plugin"),
    "plugin_configs.plugins": _t(META, "test_filter_gates_a_plugin_config_plugin"),
    # --- services, global_rules ----------------------------------------------------------------
    "services.id": _t(RESOURCES_E2E, SERVICE),
    "services.plugins": _t(RESOURCES_E2E, SERVICE),
    "services.upstream": _t(RESOURCES_E2E, SERVICE),
    "services.upstream_id": _t(RESOURCES_E2E, SERVICE),
    "services.hosts": _t(RESOURCES_E2E, SERVICE),
    "services.enable_websocket": _t(RESOURCES_E2E, SERVICE),
    "global_rules.id": _t(RESOURCES_E2E, GLOBAL),
    "global_rules.plugins": _t(RESOURCES_E2E, GLOBAL),
    "global_rules.name": _t(RESOURCES_E2E, "test_global_rules_take_no_metadata"),
    "global_rules.desc": _t(RESOURCES_E2E, "test_global_rules_take_no_metadata"),
    "global_rules.labels": _t(RESOURCES_E2E, "test_global_rules_take_no_metadata"),
    "consumer_groups.id": _t(RESOURCES_E2E, GROUP),
    "consumer_groups.plugins": _t(RESOURCES_E2E, GROUP),
    # --- ssls -----------------------------------------------------------------------------------
    "ssls.id": _t(TLS, "test_certificates_are_chosen_by_sni"),
    "ssls.cert": _t(TLS, "test_certificates_are_chosen_by_sni"),
    "ssls.key": _t(TLS, "test_private_keys_are_sealed_at_rest_and_never_returned"),
    "ssls.sni": _t(TLS, "test_certificates_are_chosen_by_sni"),
    "ssls.snis": _t(TLS, "test_a_replaced_certificate_is_served_within_a_second"),
    "ssls.status": _t(TLS, "test_a_replaced_certificate_is_served_within_a_second"),
    "ssls.type": _t(TLS, "test_writes_are_checked")
    + _t(MTLS, "test_a_client_ssl_is_presented_by_id"),
    "ssls.name": _t(TLS, "test_writes_are_checked"),
    # --- plugin_metadata.<plugin>.<field> -------------------------------------------------------
    "plugin_metadata.cors.allow_origins": _t(CORS, "test_allow_origins_by_metadata"),
    "plugin_metadata.http-logger.log_format": _t(HTTP_LOG, "test_log_format_from_plugin_metadata"),
    "plugin_metadata.http-logger.log_format_extra": _t(
        HTTP_LOG, "test_log_format_from_plugin_metadata"
    ),
    "plugin_metadata.file-logger.log_format": _t(
        RESOURCES_E2E, "test_file_logger_log_format_from_plugin_metadata"
    ),
    # The loggers share this code (plugin_api/access_logger.py): tested through http-logger.
    "plugin_metadata.file-logger.log_format_extra": _t(
        HTTP_LOG, "test_log_format_from_plugin_metadata"
    ),
    # --- _meta, on every plugin -----------------------------------------------------------------
    "_meta.disable": _t(
        META, "test_disable_takes_a_route_plugin_out", "test_consumer_plugins_honour_meta"
    ),
    "_meta.priority": _t(META, "test_priority_reorders_the_chain"),
    "_meta.error_response": _t(META, "test_error_response_replaces_the_plugins_error_body"),
    "_meta.filter": _t(
        META, "test_filter_gates_a_route_plugin", "test_filter_gates_a_plugin_in_every_phase"
    )
    + _t(ROUTE_E2E, "test_meta_filter_gates_a_plugin"),
    "_meta.pre_function": _t(COMPILING, "test_route_writes_that_would_not_compile_are_400"),
    # --- basic-auth, key-auth, consumer-restriction ----------------------------------------------
    "plugins.basic-auth.hide_credentials": _t(BASIC, "test_hide_credentials"),
    "plugins.basic-auth.realm": _t(BASIC, "test_custom_realm"),
    "plugins.basic-auth.anonymous_consumer": _t(BASIC, "test_anonymous_consumer"),
    "consumer_plugins.basic-auth.username": _t(BASIC, "test_seed_consumer_authenticates"),
    "consumer_plugins.basic-auth.password": _t(BASIC, "test_wrong_credentials"),
    "plugins.key-auth.header": _t(KEY, "test_custom_header_and_query"),
    "plugins.key-auth.query": _t(KEY, "test_custom_header_and_query"),
    "plugins.key-auth.realm": _t(KEY, "test_custom_header_and_query"),
    "plugins.key-auth.hide_credentials": _t(
        KEY,
        "test_hide_credentials_header",
        "test_hide_credentials_query",
        "test_hide_credentials_query_hides_it_from_later_variables",
    ),
    "plugins.key-auth.anonymous_consumer": _t(KEY, "test_anonymous_consumer"),
    "consumer_plugins.key-auth.key": _t(KEY, "test_key_in_header", "test_invalid_key"),
    "plugins.consumer-restriction.type": _t(RESTRICT, "test_route_id", "test_consumer_group_id"),
    "plugins.consumer-restriction.blacklist": _t(RESTRICT, "test_blacklist"),
    "plugins.consumer-restriction.whitelist": _t(RESTRICT, "test_whitelist"),
    "plugins.consumer-restriction.allowed_by_methods": _t(RESTRICT, "test_allowed_by_methods"),
    "plugins.consumer-restriction.allowed_by_methods.user": _t(RESTRICT, "test_allowed_by_methods"),
    "plugins.consumer-restriction.allowed_by_methods.methods": _t(
        RESTRICT, "test_allowed_by_methods", "test_entry_without_methods_allows_none"
    ),
    "plugins.consumer-restriction.rejected_code": _t(RESTRICT, "test_rejected_code_and_msg"),
    "plugins.consumer-restriction.rejected_msg": _t(RESTRICT, "test_rejected_code_and_msg"),
    # --- limit-count ---------------------------------------------------------------------------
    "plugins.limit-count.policy": _t(COUNT, "test_redis_policy"),
    "plugins.limit-count.redis_host": _t(COUNT, "test_redis_policy"),
    "plugins.limit-count.redis_port": _t(
        COUNT, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    "plugins.limit-count.redis_timeout": _t(
        COUNT, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    "plugins.limit-count.redis_cluster_nodes": _t(COUNT, "test_redis_policy"),
    "plugins.limit-count.redis_database": _t(
        COUNT, "test_policy_redis_without_host_counts_in_the_default_redis"
    ),
    **{
        f"plugins.limit-count.{field}": _t(COUNT, "test_redis_sentinel_policy_counts_in_the_master")
        for field in (
            "redis_sentinels",
            "redis_sentinels.host",
            "redis_sentinels.port",
            "redis_master_name",
            "redis_connect_timeout",
            "redis_read_timeout",
            "sentinel_username",
            "sentinel_password",
        )
    },
    # Only "master" is accepted: a replica refuses the counters' writes.
    "plugins.limit-count.redis_role": _t("tests/plugins/test_limit_count.py", "test_invalid"),
    "plugins.limit-count.count": _t(COUNT, "test_seed_blog_config_passes_two_then_rejects"),
    "plugins.limit-count.time_window": _t(COUNT, "test_window_expiry_lets_requests_through_again"),
    "plugins.limit-count.window_type": _t(COUNT, "test_sliding_window"),
    "plugins.limit-count.rules": _t(
        COUNT, "test_rules_count_several_windows_with_prefixed_headers"
    ),
    "plugins.limit-count.rules.count": _t(
        COUNT, "test_rules_count_several_windows_with_prefixed_headers"
    ),
    "plugins.limit-count.rules.time_window": _t(
        COUNT, "test_rules_count_several_windows_with_prefixed_headers"
    ),
    "plugins.limit-count.rules.key": _t(
        COUNT, "test_rules_count_several_windows_with_prefixed_headers"
    ),
    "plugins.limit-count.rules.header_prefix": _t(
        COUNT, "test_rules_count_several_windows_with_prefixed_headers"
    ),
    "plugins.limit-count.group": _t(COUNT, "test_group_shares_one_counter_across_routes"),
    "plugins.limit-count.key": _t(
        COUNT, "test_var_key_counts_each_value_and_falls_back_to_the_client"
    ),
    "plugins.limit-count.key_type": _t(
        COUNT, "test_var_combination_key", "test_constant_key_is_one_counter_per_route"
    ),
    "plugins.limit-count.rejected_code": _t(COUNT, "test_seed_blog_config_passes_two_then_rejects"),
    "plugins.limit-count.rejected_msg": _t(COUNT, "test_seed_blog_config_passes_two_then_rejects"),
    "plugins.limit-count.allow_degradation": _t(
        COUNT, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    "plugins.limit-count.show_limit_quota_header": _t(
        COUNT, "test_defaults_503_json_and_headers_can_be_hidden"
    ),
    # --- limit-req -----------------------------------------------------------------------------
    "plugins.limit-req.policy": _t(REQ, "test_redis_policy"),
    "plugins.limit-req.redis_host": _t(REQ, "test_redis_policy"),
    "plugins.limit-req.redis_port": _t(
        REQ, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    "plugins.limit-req.rate": _t(REQ, "test_over_rate_without_burst_is_rejected"),
    "plugins.limit-req.burst": _t(REQ, "test_burst_is_delayed_then_rejected"),
    "plugins.limit-req.key": _t(REQ, "test_each_key_has_its_own_bucket"),
    "plugins.limit-req.key_type": _t(REQ, "test_each_key_has_its_own_bucket"),
    "plugins.limit-req.rejected_code": _t(REQ, "test_a_rejection_carries_the_configured_message"),
    "plugins.limit-req.rejected_msg": _t(REQ, "test_a_rejection_carries_the_configured_message"),
    "plugins.limit-req.nodelay": _t(REQ, "test_nodelay_passes_the_burst_at_once"),
    "plugins.limit-req.allow_degradation": _t(
        REQ, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    # --- limit-conn ----------------------------------------------------------------------------
    "plugins.limit-conn.policy": _t(CONN, "test_redis_policy"),
    "plugins.limit-conn.redis_host": _t(CONN, "test_redis_policy"),
    "plugins.limit-conn.redis_port": _t(
        CONN, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    "plugins.limit-conn.conn": _t(
        CONN, "test_over_conn_is_rejected_and_released_after_the_response"
    ),
    "plugins.limit-conn.burst": _t(CONN, "test_burst_is_delayed"),
    "plugins.limit-conn.default_conn_delay": _t(
        CONN, "test_the_delay_follows_the_latency_unless_only_default"
    ),
    "plugins.limit-conn.only_use_default_delay": _t(
        CONN, "test_the_delay_follows_the_latency_unless_only_default"
    ),
    "plugins.limit-conn.key": _t(CONN, "test_each_key_counts_separately"),
    "plugins.limit-conn.key_type": _t(CONN, "test_redis_policy"),
    "plugins.limit-conn.rejected_code": _t(
        CONN, "test_over_conn_is_rejected_and_released_after_the_response"
    ),
    "plugins.limit-conn.rejected_msg": _t(
        CONN, "test_over_conn_is_rejected_and_released_after_the_response"
    ),
    "plugins.limit-conn.allow_degradation": _t(
        CONN, "test_redis_down_is_a_503_unless_degradation_is_allowed"
    ),
    "plugins.limit-conn.key_ttl": _t(
        "tests/runtime/test_counters.py", "test_a_dead_holders_redis_slots_end_with_its_lease"
    ),
    "plugins.limit-conn.rules": _t(CONN, "test_rules_apply_several_limits_and_skip_unset_keys"),
    "plugins.limit-conn.rules.conn": _t(
        CONN, "test_rules_apply_several_limits_and_skip_unset_keys"
    ),
    "plugins.limit-conn.rules.burst": _t(
        CONN, "test_rules_apply_several_limits_and_skip_unset_keys"
    ),
    "plugins.limit-conn.rules.key": _t(CONN, "test_rules_apply_several_limits_and_skip_unset_keys"),
    # --- proxy-rewrite -------------------------------------------------------------------------
    "plugins.proxy-rewrite.uri": _t(
        REWRITE, "test_uri_keeps_the_query_string", "test_uri_variables"
    ),
    "plugins.proxy-rewrite.method": _t(REWRITE, "test_method_rewrite"),
    "plugins.proxy-rewrite.regex_uri": _t(
        REWRITE, "test_regex_uri_captures", "test_regex_uri_first_matching_pair_wins"
    ),
    "plugins.proxy-rewrite.host": _t(REWRITE, "test_host_against_pass_host"),
    "plugins.proxy-rewrite.headers": _t(
        REWRITE, "test_flat_headers_set_and_unset_variables_render_empty"
    ),
    "plugins.proxy-rewrite.headers.add": _t(
        REWRITE, "test_header_operations_with_variables_and_captures"
    ),
    "plugins.proxy-rewrite.headers.set": _t(
        REWRITE,
        "test_header_operations_with_variables_and_captures",
        "test_later_plugins_read_the_request_headers_as_changed",
    ),
    "plugins.proxy-rewrite.headers.remove": _t(
        REWRITE, "test_header_operations_with_variables_and_captures"
    ),
    "plugins.proxy-rewrite.use_real_request_uri_unsafe": _t(
        REWRITE, "test_use_real_request_uri_unsafe"
    ),
    # --- proxy-cache ---------------------------------------------------------------------------
    "plugins.proxy-cache.max_resp_body_size": _t(
        CACHE, "test_responses_over_the_size_bound_are_not_stored"
    ),
    "plugins.proxy-cache.cache_strategy": _t(
        CACHE, "test_disk_ttl_defaults_to_ten_seconds", "test_disk_entries_survive_a_restart"
    ),
    "plugins.proxy-cache.cache_key": _t(CACHE, "test_cache_bypass"),
    "plugins.proxy-cache.cache_http_status": _t(
        CACHE, "test_status_outside_cache_http_status_is_not_stored"
    ),
    "plugins.proxy-cache.cache_method": _t(
        CACHE, "test_seed_config_miss_hit_then_other_prompt_misses"
    ),
    "plugins.proxy-cache.hide_cache_headers": _t(CACHE, "test_hide_cache_headers"),
    "plugins.proxy-cache.cache_control": _t(CACHE, "test_request_cache_control_with_cache_control"),
    "plugins.proxy-cache.cache_bypass": _t(CACHE, "test_cache_bypass"),
    "plugins.proxy-cache.no_cache": _t(CACHE, "test_no_cache"),
    "plugins.proxy-cache.cache_ttl": _t(CACHE, "test_ttl_expiry"),
    # --- cors ----------------------------------------------------------------------------------
    "plugins.cors.allow_origins": _t(
        CORS, "test_listed_origins", "test_single_origin_must_match_exactly"
    ),
    "plugins.cors.allow_methods": _t(
        CORS, "test_credentials_and_explicit_lists", "test_double_star_echoes"
    ),
    "plugins.cors.allow_headers": _t(
        CORS, "test_credentials_and_explicit_lists", "test_double_star_echoes"
    ),
    "plugins.cors.expose_headers": _t(CORS, "test_credentials_and_explicit_lists"),
    "plugins.cors.max_age": _t(CORS, "test_credentials_and_explicit_lists"),
    "plugins.cors.allow_origins_by_metadata": _t(CORS, "test_allow_origins_by_metadata"),
    "plugins.cors.allow_credential": _t(CORS, "test_credentials_and_explicit_lists"),
    "plugins.cors.allow_origins_by_regex": _t(CORS, "test_origins_by_regex_replace_allow_origins")
    + _t(ROUTE_E2E, "test_the_issues_configs_compile_and_work"),
    "plugins.cors.timing_allow_origins": _t(CORS, "test_timing_allow_origin"),
    "plugins.cors.timing_allow_origins_by_regex": _t(
        ROUTE_E2E, "test_the_issues_configs_compile_and_work"
    ),
    # --- request-id ----------------------------------------------------------------------------
    "plugins.request-id.header_name": _t(REQUEST_ID, "test_custom_header_without_response_header"),
    "plugins.request-id.include_in_response": _t(
        REQUEST_ID, "test_custom_header_without_response_header"
    ),
    "plugins.request-id.algorithm": _t(REQUEST_ID, "test_algorithms"),
    "plugins.request-id.range_id": _t(REQUEST_ID, "test_algorithms"),
    "plugins.request-id.range_id.length": _t(REQUEST_ID, "test_algorithms"),
    "plugins.request-id.range_id.char_set": _t(REQUEST_ID, "test_algorithms"),
    # --- response-rewrite ----------------------------------------------------------------------
    "plugins.response-rewrite.max_resp_body_size": _t(
        RESPONSE, "test_filters_truncate_at_max_resp_body_size"
    ),
    "plugins.response-rewrite.headers": _t(RESPONSE, "test_flat_headers"),
    "plugins.response-rewrite.headers.add": _t(RESPONSE, "test_header_operations_with_variables"),
    "plugins.response-rewrite.headers.set": _t(
        RESPONSE,
        "test_header_operations_with_variables",
        "test_balancer_and_response_header_variables",
    ),
    "plugins.response-rewrite.headers.remove": _t(
        RESPONSE,
        "test_header_operations_with_variables",
        "test_removed_content_length_is_not_sent",
    )
    + _t(PROXY_WIRE, "test_response_rewrite_removing_content_type_sends_none"),
    "plugins.response-rewrite.body": _t(RESPONSE, "test_status_and_body"),
    "plugins.response-rewrite.body_base64": _t(RESPONSE, "test_base64_body"),
    "plugins.response-rewrite.status_code": _t(RESPONSE, "test_status_and_body"),
    "plugins.response-rewrite.vars": _t(
        RESPONSE,
        "test_vars_condition",
        "test_vars_logic_and_in",
        "test_balancer_and_response_header_variables",
    ),
    "plugins.response-rewrite.filters": _t(RESPONSE, "test_filters"),
    "plugins.response-rewrite.filters.regex": _t(RESPONSE, "test_filters"),
    "plugins.response-rewrite.filters.scope": _t(RESPONSE, "test_filters"),
    "plugins.response-rewrite.filters.replace": _t(RESPONSE, "test_filters"),
    "plugins.response-rewrite.filters.options": _t(
        ROUTE_E2E, "test_the_issues_configs_compile_and_work"
    ),
    # --- prometheus, file-logger, http-logger --------------------------------------------------
    "plugins.prometheus.prefer_name": _t(
        METRICS, "test_plugin_replies_are_counted_with_consumer_and_no_node"
    ),
    "plugins.file-logger.path": _t(FILE_LOG, "test_one_line_per_request_with_the_default_fields"),
    "plugins.file-logger.log_format": _t(
        FILE_LOG, "test_log_format_and_match", "test_log_format_takes_nginx_common_variables"
    ),
    "plugins.file-logger.log_format_extra": _t(
        ACCESS_LOG, "test_log_format_extra_adds_but_never_overrides"
    ),
    "plugins.file-logger.include_req_body": _t(FILE_LOG, "test_request_and_response_bodies"),
    "plugins.file-logger.include_req_body_expr": _t(
        ACCESS_LOG, "test_request_body_expr_and_default_off"
    ),
    "plugins.file-logger.include_resp_body": _t(FILE_LOG, "test_request_and_response_bodies"),
    "plugins.file-logger.include_resp_body_expr": _t(ACCESS_LOG, "test_response_body_expr"),
    "plugins.file-logger.max_req_body_bytes": _t(
        ACCESS_LOG, "test_request_body_read_by_the_gateway_is_bounded"
    ),
    "plugins.file-logger.max_resp_body_bytes": _t(FILE_LOG, "test_request_and_response_bodies"),
    "plugins.file-logger.match": _t(FILE_LOG, "test_log_format_and_match"),
    "plugins.http-logger.uri": _t(HTTP_LOG, "test_batch_is_posted_as_a_json_array"),
    "plugins.http-logger.auth_header": _t(HTTP_LOG, "test_batch_is_posted_as_a_json_array"),
    "plugins.http-logger.timeout": _t(HTTP_LOG, "test_slow_collector_never_slows_requests"),
    "plugins.http-logger.log_format": _t(HTTP_LOG, "test_log_format"),
    "plugins.http-logger.log_format_extra": _t(
        ACCESS_LOG, "test_log_format_extra_adds_but_never_overrides"
    ),
    "plugins.http-logger.include_req_body": _t(HTTP_LOG, "test_include_req_body"),
    "plugins.http-logger.include_req_body_expr": _t(
        ACCESS_LOG, "test_request_body_expr_and_default_off"
    ),
    "plugins.http-logger.include_resp_body": _t(
        ACCESS_LOG, "test_response_body_is_bounded_and_inflated"
    ),
    "plugins.http-logger.include_resp_body_expr": _t(ACCESS_LOG, "test_response_body_expr"),
    "plugins.http-logger.max_req_body_bytes": _t(HTTP_LOG, "test_include_req_body"),
    "plugins.http-logger.max_resp_body_bytes": _t(
        ACCESS_LOG, "test_response_body_is_bounded_and_inflated"
    ),
    "plugins.http-logger.concat_method": _t(HTTP_LOG, "test_new_line_concat"),
    "plugins.http-logger.ssl_verify": _t(
        HTTP_LOG, "test_ssl_verify_checks_the_collectors_certificate"
    ),
    "plugins.http-logger.max_retry_count": _t(
        HTTP_LOG, "test_down_collector_is_retried_then_dropped"
    ),
    "plugins.http-logger.retry_delay": _t(HTTP_LOG, "test_down_collector_is_retried_then_dropped"),
    "plugins.http-logger.buffer_duration": _t(BATCH, "test_buffer_duration_caps_a_busy_batch"),
    "plugins.http-logger.inactive_timeout": _t(
        HTTP_LOG, "test_inactive_timeout_sends_a_partial_batch"
    ),
    "plugins.http-logger.batch_max_size": _t(
        HTTP_LOG, "test_batch_is_posted_as_a_json_array", "test_batch_of_one_is_a_single_object"
    ),
}


def _checks(prefix: str, passive: bool) -> dict[str, tuple[str, ...]]:
    """Health checks: an upstream's, and (active only) each ai-proxy-multi instance's."""
    active = f"{prefix}.active"
    fields = {
        prefix: _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        active: _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        f"{active}.type": _t(PROBE, "test_tcp_probe_only_connects"),
        f"{active}.timeout": _t(PROBE, "test_outcomes_of_failures"),
        f"{active}.concurrency": _t(HEALTH, "test_probes_run_concurrently_up_to_concurrency"),
        f"{active}.host": _t(HEALTH, "test_probe_targets_use_the_active_host_and_port"),
        f"{active}.port": _t(HEALTH, "test_probe_targets_use_the_active_host_and_port"),
        f"{active}.http_path": _t(
            PROBE, "test_http_probe_sends_what_apisix_sends_and_reads_the_status"
        ),
        f"{active}.http_method": _t(
            PROBE, "test_http_probe_sends_what_apisix_sends_and_reads_the_status"
        ),
        f"{active}.http_req_body": _t(
            PROBE, "test_http_probe_sends_what_apisix_sends_and_reads_the_status"
        ),
        f"{active}.req_headers": _t(
            PROBE, "test_http_probe_sends_what_apisix_sends_and_reads_the_status"
        ),
        f"{active}.https_verify_certificate": _t(
            PROBE, "test_https_probe_verifies_certificates_unless_told_not_to"
        ),
        f"{active}.healthy": _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        f"{active}.healthy.interval": _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        f"{active}.healthy.successes": _t(
            HEALTH_E2E, "test_an_unhealthy_status_takes_a_node_out_and_its_recovery_brings_it_back"
        ),
        f"{active}.healthy.http_statuses": _t(
            HEALTH, "test_probes_take_a_node_out_within_two_intervals_and_bring_it_back"
        ),
        f"{active}.unhealthy": _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        f"{active}.unhealthy.interval": _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        f"{active}.unhealthy.http_failures": _t(
            HEALTH_E2E, "test_an_unhealthy_status_takes_a_node_out_and_its_recovery_brings_it_back"
        ),
        f"{active}.unhealthy.http_statuses": _t(
            HEALTH, "test_probes_take_a_node_out_within_two_intervals_and_bring_it_back"
        ),
        f"{active}.unhealthy.tcp_failures": _t(
            HEALTH_E2E,
            "test_active_checks_take_a_dead_node_out_within_two_intervals_and_bring_it_back",
        ),
        f"{active}.unhealthy.timeouts": _t(
            HEALTH, "test_passive_failures_of_each_kind_count_against_their_own_threshold"
        ),
    }
    if passive:
        p = f"{prefix}.passive"
        fields.update(
            {
                p: _t(
                    HEALTH_E2E,
                    "test_passive_checks_take_a_dead_node_out_after_the_configured_failures",
                ),
                f"{p}.type": _t("tests/schemas/test_checks.py", "test_refused"),
                f"{p}.healthy": _t(
                    HEALTH, "test_traffic_brings_a_node_back_after_healthy_successes"
                ),
                f"{p}.healthy.http_statuses": _t(
                    HEALTH, "test_traffic_brings_a_node_back_after_healthy_successes"
                ),
                f"{p}.healthy.successes": _t(
                    HEALTH, "test_traffic_brings_a_node_back_after_healthy_successes"
                ),
                f"{p}.unhealthy": _t(
                    HEALTH_E2E,
                    "test_passive_checks_take_a_dead_node_out_after_the_configured_failures",
                ),
                f"{p}.unhealthy.http_failures": _t(
                    HEALTH_E2E,
                    "test_an_unhealthy_status_takes_a_node_out_and_its_recovery_brings_it_back",
                ),
                f"{p}.unhealthy.http_statuses": _t(
                    HEALTH_E2E,
                    "test_an_unhealthy_status_takes_a_node_out_and_its_recovery_brings_it_back",
                ),
                f"{p}.unhealthy.tcp_failures": _t(
                    HEALTH_E2E,
                    "test_passive_checks_take_a_dead_node_out_after_the_configured_failures",
                ),
                f"{p}.unhealthy.timeouts": _t(
                    HEALTH, "test_passive_failures_of_each_kind_count_against_their_own_threshold"
                ),
            }
        )
    return fields


EFFECT_TESTS.update(_checks("upstreams.checks", passive=True))
EFFECT_TESTS.update(_checks("plugins.ai-proxy-multi.instances.checks", passive=False))
EFFECT_TESTS["plugins.ai-proxy-multi.instances.checks"] += _t(
    AI_MULTI, "test_active_checks_take_an_unhealthy_instance_out"
)


def _llm(plugin: str, prefix: str) -> dict[str, tuple[str, ...]]:
    """ai-proxy's provider fields, also those of each ai-proxy-multi instance."""
    p = f"plugins.{plugin}.{prefix}"
    return {
        f"{p}provider": _t(
            AI_PROXY, "test_completions_and_embeddings", "test_azure_endpoint_query_and_api_key"
        ),
        f"{p}provider_conf": _t(AI_TARGET, "test_vertex_defaults"),
        f"{p}provider_conf.project_id": _t(AI_TARGET, "test_vertex_defaults"),
        f"{p}provider_conf.region": _t(AI_TARGET, "test_vertex_defaults"),
        f"{p}auth": _t(AI_OPTIONS, "test_auth_query_is_added_to_the_providers_url"),
        f"{p}auth.header": _t(AI_PROXY, "test_seed_000_chat_service_as_configuration"),
        f"{p}auth.query": _t(AI_OPTIONS, "test_auth_query_is_added_to_the_providers_url"),
        f"{p}auth.gcp": _t(AI_TARGET, "test_providers_llmgate_cannot_sign_for_are_refused"),
        f"{p}auth.aws": _t(AI_TARGET, "test_providers_llmgate_cannot_sign_for_are_refused"),
        f"{p}options": _t(ROUTE_E2E, "test_priority_and_vars_pick_the_ai_proxy_model"),
        f"{p}options.model": _t(ROUTE_E2E, "test_priority_and_vars_pick_the_ai_proxy_model"),
        f"{p}override": _t(AI_OPTIONS, "test_override_request_body_fills_in_or_forces"),
        f"{p}override.endpoint": _t(AI_PROXY, "test_azure_endpoint_query_and_api_key"),
        f"{p}override.llm_options": _t(
            AI_OPTIONS, "test_override_llm_options_max_tokens_always_wins"
        ),
        f"{p}override.llm_options.max_tokens": _t(
            AI_OPTIONS, "test_override_llm_options_max_tokens_always_wins"
        ),
        f"{p}override.request_body": _t(
            AI_OPTIONS, "test_override_request_body_fills_in_or_forces"
        ),
        f"{p}override.request_body_force_override": _t(
            AI_OPTIONS, "test_override_request_body_fills_in_or_forces"
        ),
    }


def _call_options(plugin: str) -> dict[str, tuple[str, ...]]:
    """What ai-proxy and ai-proxy-multi share about calling the provider."""
    p = f"plugins.{plugin}."
    return {
        f"{p}timeout": _t(AI_OPTIONS, "test_timeout_bounds_a_slow_provider"),
        f"{p}max_req_body_size": _t(AI_OPTIONS, "test_max_req_body_size_refuses_larger_bodies"),
        f"{p}keepalive": _t(AI_OPTIONS, "test_keepalive_false_closes_each_connection"),
        f"{p}ssl_verify": _t(AI_OPTIONS, "test_ssl_verify_checks_the_providers_certificate"),
        f"{p}keepalive_pool": _t(
            AI_OPTIONS, "test_keepalive_pool_and_keepalive_timeout_shape_the_providers_pool"
        ),
        f"{p}keepalive_timeout": _t(
            AI_OPTIONS, "test_keepalive_pool_and_keepalive_timeout_shape_the_providers_pool"
        ),
        f"{p}max_stream_duration_ms": _t(
            AI_CAPS,
            "test_a_stream_past_max_stream_duration_ms_is_cut",
            "test_a_stalled_stream_is_cut_at_the_deadline_too",
        ),
        f"{p}max_response_bytes": _t(
            AI_CAPS,
            "test_max_response_bytes_cuts_a_stream",
            "test_max_response_bytes_refuses_a_larger_answer_with_502",
        ),
        f"{p}logging.payloads": _t(COMPILING, "test_route_writes_that_would_not_compile_are_400"),
    }


EFFECT_TESTS.update(_llm("ai-proxy", ""))
EFFECT_TESTS.update(_llm("ai-proxy-multi", "instances."))
EFFECT_TESTS.update(_call_options("ai-proxy"))
EFFECT_TESTS.update(_call_options("ai-proxy-multi"))
EFFECT_TESTS.update(
    {
        # --- ai-proxy-multi's own ---------------------------------------------------------------
        "plugins.ai-proxy-multi.balancer": _t(AI_MULTI, "test_chash_on_a_header_is_sticky"),
        "plugins.ai-proxy-multi.balancer.algorithm": _t(
            AI_MULTI, "test_chash_on_a_header_is_sticky", "test_weights_share_the_traffic"
        ),
        "plugins.ai-proxy-multi.balancer.hash_on": _t(AI_MULTI, "test_chash_on_a_header_is_sticky"),
        "plugins.ai-proxy-multi.balancer.key": _t(AI_MULTI, "test_chash_on_a_header_is_sticky"),
        "plugins.ai-proxy-multi.instances": _t(AI_MULTI, "test_weights_share_the_traffic"),
        "plugins.ai-proxy-multi.instances.name": _t(
            AI_MULTI, "test_falls_back_on_5xx_then_cools_the_instance_down"
        ),
        "plugins.ai-proxy-multi.instances.priority": _t(
            AI_MULTI, "test_highest_priority_takes_everything_standby_weight_zero_unused"
        ),
        "plugins.ai-proxy-multi.instances.weight": _t(AI_MULTI, "test_weights_share_the_traffic"),
        "plugins.ai-proxy-multi.fallback_strategy": _t(
            AI_MULTI,
            "test_falls_back_from_a_dead_instance",
            "test_failures_outside_the_strategy_are_relayed",
        ),
        "plugins.ai-proxy-multi.fallback_http_statuses": _t(
            AI_MULTI, "test_fallback_http_statuses"
        ),
        "plugins.ai-proxy-multi.max_retries": _t(AI_MULTI, "test_max_retries_bounds_the_fallbacks"),
        "plugins.ai-proxy-multi.instances.timeout": _t(AI_CAPS, "test_instance_timeout_is_its_own"),
        # --- openai-compatible (llmgate's) ------------------------------------------------------
        "plugins.openai-compatible.models": _t(
            OPENAI_COMPATIBLE,
            "test_models_and_owned_by_answer_from_configuration",
            "test_without_models_the_upstream_answers",
        ),
        "plugins.openai-compatible.owned_by": _t(
            OPENAI_COMPATIBLE, "test_models_and_owned_by_answer_from_configuration"
        ),
        "plugins.openai-compatible.include_usage": _t(OPENAI_COMPATIBLE, "test_include_usage"),
        "plugins.ai-proxy-multi.retry_on_failure_within_ms": _t(
            AI_MULTI, "test_slow_failures_are_not_retried"
        ),
        # --- prompt plugins --------------------------------------------------------------------
        "plugins.ai-prompt-decorator.max_req_body_size": _t(
            DECORATOR, "test_max_req_body_size_refuses_larger_bodies"
        ),
        "plugins.ai-prompt-decorator.prepend": _t(
            DECORATOR,
            "test_prepend_and_append_around_the_messages",
            "test_prepend_only_and_append_only",
        ),
        "plugins.ai-prompt-decorator.prepend.role": _t(
            DECORATOR, "test_prepend_and_append_around_the_messages"
        ),
        "plugins.ai-prompt-decorator.prepend.content": _t(
            DECORATOR, "test_prepend_and_append_around_the_messages"
        ),
        "plugins.ai-prompt-decorator.append": _t(
            DECORATOR,
            "test_prepend_and_append_around_the_messages",
            "test_prepend_only_and_append_only",
        ),
        "plugins.ai-prompt-decorator.append.role": _t(
            DECORATOR, "test_prepend_and_append_around_the_messages"
        ),
        "plugins.ai-prompt-decorator.append.content": _t(
            DECORATOR, "test_prepend_and_append_around_the_messages"
        ),
        "plugins.ai-prompt-template.max_req_body_size": _t(
            TEMPLATE, "test_body_over_max_req_body_size"
        ),
        "plugins.ai-prompt-template.templates": _t(
            TEMPLATE, "test_named_template_is_filled_from_the_body"
        ),
        "plugins.ai-prompt-template.templates.name": _t(
            TEMPLATE, "test_named_template_is_filled_from_the_body"
        ),
        "plugins.ai-prompt-template.templates.template": _t(
            TEMPLATE, "test_named_template_is_filled_from_the_body"
        ),
        "plugins.ai-prompt-template.templates.template.model": _t(
            SEED_CHAT, "test_chat_service_as_configuration"
        ),
        "plugins.ai-prompt-template.templates.template.messages": _t(
            TEMPLATE, "test_named_template_is_filled_from_the_body"
        ),
        "plugins.ai-prompt-template.templates.template.messages.role": _t(
            SEED_CHAT, "test_chat_service_as_configuration"
        ),
        "plugins.ai-prompt-template.templates.template.messages.content": _t(
            SEED_CHAT, "test_chat_service_as_configuration"
        ),
        "plugins.ai-prompt-guard.max_req_body_size": _t(
            GUARD, "test_max_req_body_size_refuses_larger_bodies"
        ),
        "plugins.ai-prompt-guard.match_all_roles": _t(GUARD, "test_guard"),
        "plugins.ai-prompt-guard.match_all_conversation_history": _t(GUARD, "test_guard"),
        "plugins.ai-prompt-guard.allow_patterns": _t(GUARD, "test_guard"),
        "plugins.ai-prompt-guard.deny_patterns": _t(GUARD, "test_guard"),
        "plugins.ai-prompt-guard.fail_mode": _t(GUARD, "test_fail_mode"),
        # --- ai-rate-limiting ------------------------------------------------------------------
        "plugins.ai-rate-limiting.limit": _t(BUDGET, "test_budget_spent_refuses_the_next_request"),
        "plugins.ai-rate-limiting.time_window": _t(
            BUDGET, "test_budget_spent_refuses_the_next_request"
        ),
        "plugins.ai-rate-limiting.show_limit_quota_header": _t(
            BUDGET, "test_rejected_code_msg_and_no_headers"
        ),
        "plugins.ai-rate-limiting.limit_strategy": _t(
            BUDGET, "test_limit_strategy", "test_cost_budgets_count_millionths_of_the_currency"
        ),
        "plugins.ai-rate-limiting.completion_estimate": _t(
            BUDGET, "test_concurrent_calls_reserve_before_they_are_sent"
        ),
        "plugins.ai-rate-limiting.policy": _t(
            BUDGETS_E2E, "test_thirty_concurrent_streams_stay_within_one_estimate_of_the_budget"
        ),
        "plugins.ai-rate-limiting.redis_host": _t(
            BUDGETS_E2E, "test_thirty_concurrent_streams_stay_within_one_estimate_of_the_budget"
        ),
        "plugins.ai-rate-limiting.instances": _t(BUDGET, "test_instances_have_their_own_budgets"),
        "plugins.ai-rate-limiting.instances.name": _t(
            BUDGET, "test_instances_have_their_own_budgets"
        ),
        "plugins.ai-rate-limiting.instances.limit": _t(
            BUDGET, "test_instances_have_their_own_budgets"
        ),
        "plugins.ai-rate-limiting.instances.time_window": _t(
            BUDGET, "test_instances_have_their_own_budgets"
        ),
        "plugins.ai-rate-limiting.rejected_code": _t(
            BUDGET, "test_rejected_code_msg_and_no_headers"
        ),
        "plugins.ai-rate-limiting.rejected_msg": _t(
            BUDGET, "test_rejected_code_msg_and_no_headers"
        ),
        "plugins.ai-rate-limiting.allow_degradation": _t(BUDGET, "test_counters_unavailable"),
        "plugins.ai-rate-limiting.rules": _t(BUDGET, "test_rules_are_keyed_by_variables"),
        "plugins.ai-rate-limiting.rules.count": _t(BUDGET, "test_rules_are_keyed_by_variables"),
        "plugins.ai-rate-limiting.rules.time_window": _t(
            BUDGET, "test_rules_are_keyed_by_variables"
        ),
        "plugins.ai-rate-limiting.rules.key": _t(BUDGET, "test_rules_are_keyed_by_variables"),
        "plugins.ai-rate-limiting.rules.header_prefix": _t(
            BUDGET, "test_rules_are_keyed_by_variables"
        ),
    }
)
