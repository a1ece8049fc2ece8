/* harness.v1.AuthService over the auth module, and the authenticator every
 * non-public RPC passes through. Only conversion and error mapping here: the
 * rules live in the module. */
#include "auth_service.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#include "clock.h"
#include "gateway_auth.h"
#include "harness/v1/auth.pb-c.h"
#include "harness/v1/checkpoint.pb-c.h"
#include "harness/v1/health.pb-c.h"
#include "harness/v1/sandbox.pb-c.h"
#include "netaddr.h"
#include "rpc_pb.h"

#define TOKEN_MAX 8192

/* What is left of the caller's deadline, for the module's upstream calls. */
static int time_left(hs_rpc_call *call)
{
	int64_t left = hs_rpc_call_deadline_left_ms(call);
	if (left == INT64_MAX)
		return -1;
	return left <= 0 ? 1 : (left > 600000 ? 600000 : (int)left);
}

/* --- authenticator -------------------------------------------------------- */

static int authenticate(hs_rpc_call *call, hs_rpc_principal *out, hs_error *err, void *payload)
{
	hs_auth *auth = payload;
	size_t len = 0;
	const char *h = hs_rpc_call_metadata(call, "authorization", &len);
	const char *bearer = NULL;
	if (h != NULL) {
		if (len < 8 || strncasecmp(h, "Bearer ", 7) != 0)
			return hs_error_set(err, HS_UNAUTH,
					    "authorization must be 'Bearer <access token or API key>'");
		bearer = h + 7;
		while (*bearer == ' ')
			bearer++;
		size_t blen = strlen(bearer);
		if (blen == 0 || blen > TOKEN_MAX)
			return hs_error_set(err, HS_UNAUTH, "invalid access token");
	}
	/* Client certificate names matter only without a bearer token. */
	hs_rpc_peer_name names[16];
	size_t n = bearer == NULL ? hs_rpc_call_peer_cert_names(call, names, 16) : 0;
	hs_auth_cert_name cn[16];
	for (size_t i = 0; i < n; i++)
		cn[i] = (hs_auth_cert_name){ names[i].kind, names[i].value };
	hs_auth_identity id;
	int rc = hs_auth_authenticate(auth, bearer, cn, n, hs_rpc_call_method(call), &id, err);
	if (rc != HS_OK)
		return rc;
	size_t id_len = strlen(id.id), role_len = strlen(id.role);
	if (id_len >= sizeof(out->user_id) || role_len >= sizeof(out->role))
		return hs_error_set(err, HS_UNAUTH, "invalid access token: bad claims");
	memcpy(out->user_id, id.id, id_len + 1);
	memcpy(out->role, id.role, role_len + 1);
	out->is_admin = id.is_admin;
	return HS_OK;
}

/* hs_rpc_recheck_fn: an open stream's bearer still authenticates, as the
 * same identity (not revoked, expired, disabled or deleted since). */
static int recheck(const char *authz, size_t len, const char *method, const hs_rpc_principal *was,
		   hs_error *err, void *payload)
{
	if (authz == NULL) { /* a client certificate: the API key it maps to must still hold */
		hs_apikeys *ks = hs_auth_apikeys_lookup(payload);
		hs_apikey_principal p;
		if (ks == NULL || !hs_apikey_id_ok(was->user_id))
			return HS_OK;
		return hs_apikeys_verify_id(ks, was->user_id, method, hs_clock_wall_ms(), &p, err);
	}
	if (len < 8 || len > 7 + TOKEN_MAX || strncasecmp(authz, "Bearer ", 7) != 0)
		return hs_error_set(err, HS_UNAUTH, "invalid access token");
	char *bearer = malloc(len - 7 + 1);
	if (bearer == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	memcpy(bearer, authz + 7, len - 7);
	bearer[len - 7] = '\0';
	const char *b = bearer;
	while (*b == ' ')
		b++;
	hs_auth_identity id;
	int rc = *b == '\0' || strlen(b) != (size_t)(bearer + len - 7 - b)
			 ? hs_error_set(err, HS_UNAUTH, "invalid access token")
			 : hs_auth_authenticate(payload, b, NULL, 0, method, &id, err);
	if (rc == HS_OK && strcmp(id.id, was->user_id) != 0)
		rc = hs_error_set(err, HS_UNAUTH, "the token names another identity");
	explicit_bzero(bearer, len - 7);
	free(bearer);
	return rc;
}

/* --- conversions ------------------------------------------------------------ */

/* m (with its timestamp ts) from u; the strings are u's, not copied. */
static void user_fill(Harness__V1__User *m, Google__Protobuf__Timestamp *ts, const hs_auth_user *u)
{
	harness__v1__user__init(m);
	m->id = u->id ? u->id : "";
	m->email = u->email ? u->email : "";
	m->name = u->name ? u->name : "";
	m->role = u->role ? u->role : "user";
	hs_rpc_timestamp_set(ts, u->created_at_ms);
	m->created_at = ts;
	m->disabled = u->disabled != 0;
}

/* m (user, ts included) from r; the strings are r's, not copied. */
static void auth_fill(Harness__V1__AuthResponse *m, Harness__V1__User *user,
		      Google__Protobuf__Timestamp *ts, const hs_auth_result *r, int refresh_ttl)
{
	harness__v1__auth_response__init(m);
	user_fill(user, ts, &r->user);
	m->user = user;
	m->access_token = r->access_token ? r->access_token : "";
	m->refresh_token = r->refresh_token ? r->refresh_token : "";
	m->expires_in = (int32_t)r->expires_in;
	m->refresh_expires_in = refresh_ttl;
	m->token_type = "Bearer";
}

/* The strings of a filled user copied into the call's arena. */
static bool user_copy(hs_rpc_call *call, Harness__V1__User *m)
{
	return (m->id = hs_rpc_call_strdup(call, m->id)) != NULL &&
	       (m->email = hs_rpc_call_strdup(call, m->email)) != NULL &&
	       (m->name = hs_rpc_call_strdup(call, m->name)) != NULL &&
	       (m->role = hs_rpc_call_strdup(call, m->role)) != NULL;
}

static Harness__V1__User *user_msg(hs_rpc_call *call, const hs_auth_user *u)
{
	Harness__V1__User *m = hs_rpc_call_alloc(call, sizeof(*m));
	Google__Protobuf__Timestamp *ts = hs_rpc_call_alloc(call, sizeof(*ts));
	if (m == NULL || ts == NULL)
		return NULL;
	user_fill(m, ts, u);
	return user_copy(call, m) ? m : NULL;
}

/* The response in the call's arena (r may go before it is packed). */
static int auth_response(hs_rpc_call *call, const hs_auth_result *r, int refresh_ttl,
			 ProtobufCMessage **resp, hs_error *err)
{
	Harness__V1__AuthResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	Harness__V1__User *user = hs_rpc_call_alloc(call, sizeof(*user));
	Google__Protobuf__Timestamp *ts = hs_rpc_call_alloc(call, sizeof(*ts));
	if (m == NULL || user == NULL || ts == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	auth_fill(m, user, ts, r, refresh_ttl);
	if (!user_copy(call, user) ||
	    (m->access_token = hs_rpc_call_strdup(call, m->access_token)) == NULL ||
	    (m->refresh_token = hs_rpc_call_strdup(call, m->refresh_token)) == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*resp = &m->base;
	return HS_OK;
}

/* The address logins are counted against: the module decides which
 * metadata to believe (trusted proxies, the gateway's signature). */
static const char *client_address(hs_rpc_call *call)
{
	char *out = hs_rpc_call_alloc(call, HS_IP_TEXT_MAX);
	if (out == NULL)
		return NULL;
	hs_auth_client_address(hs_rpc_call_payload(call), hs_rpc_call_peer(call),
			       hs_rpc_call_metadata(call, "x-forwarded-for", NULL),
			       hs_rpc_call_metadata(call, HS_GATEWAY_AUTH_KEY, NULL), out,
			       HS_IP_TEXT_MAX);
	return out;
}

/* The bearer token of the call's authorization metadata, or NULL. */
static const char *bearer_token(hs_rpc_call *call)
{
	size_t len = 0;
	const char *h = hs_rpc_call_metadata(call, "authorization", &len);
	if (h == NULL || len < 8 || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return h[0] != '\0' && strlen(h) <= TOKEN_MAX ? h : NULL;
}

/* --- handlers --------------------------------------------------------------- */

#define REFRESH_TTL_UNKNOWN 0

/* An upstream login started on the CQ thread, answered from the upstream
 * client's event loop: the response is packed before res goes, so it
 * points at res's strings (no arena use off the handler's thread). */
static void login_answered(void *arg, int rc, hs_auth_result *res, const hs_error *err)
{
	hs_rpc_call *call = arg;
	if (rc != HS_OK) {
		hs_rpc_call_complete(call, rc, NULL, err);
		return;
	}
	Harness__V1__AuthResponse m;
	Harness__V1__User user;
	Google__Protobuf__Timestamp ts;
	auth_fill(&m, &user, &ts, res, REFRESH_TTL_UNKNOWN);
	hs_rpc_call_complete(call, HS_OK, &m.base, NULL);
	hs_auth_result_dispose(res);
}

/* On the CQ thread an upstream login is only started (no worker waits for
 * the user service); the local backend (argon2) goes to the lane. */
static int login(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		 hs_error *err)
{
	const Harness__V1__LoginRequest *r = (const void *)req;
	hs_auth *auth = hs_rpc_call_payload(call);
	int rc;
	if (hs_rpc_call_on_cq(call)) {
		hs_rpc_call_ref(call); /* dropped by hs_rpc_call_complete */
		rc = hs_auth_login_start(auth, r->email, r->password, client_address(call),
					 time_left(call), login_answered, call, err);
		if (rc == HS_OK)
			return HS_RPC_PENDING;
		hs_rpc_call_unref(call);
		return rc == HS_AUTH_LOGIN_BLOCKS ? HS_RPC_DEFER : rc;
	}
	hs_auth_result res;
	memset(&res, 0, sizeof(res));
	rc = hs_auth_login(auth, r->email, r->password, client_address(call), time_left(call), &res,
			   err);
	if (rc == HS_OK)
		rc = auth_response(call, &res, REFRESH_TTL_UNKNOWN, resp, err);
	hs_auth_result_dispose(&res);
	return rc;
}

static int refresh(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		   hs_error *err)
{
	const Harness__V1__RefreshRequest *r = (const void *)req;
	if (r->refresh_token[0] == '\0')
		return hs_error_set(err, HS_INVALID, "refresh_token: required");
	if (strlen(r->refresh_token) > TOKEN_MAX)
		return hs_error_set(err, HS_UNAUTH, "invalid or expired refresh token");
	hs_auth_result res;
	memset(&res, 0, sizeof(res));
	int rc = hs_auth_refresh(hs_rpc_call_payload(call), r->refresh_token, time_left(call), &res,
				 err);
	if (rc == HS_OK)
		rc = auth_response(call, &res, REFRESH_TTL_UNKNOWN, resp, err);
	hs_auth_result_dispose(&res);
	return rc;
}

static int logout(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		  hs_error *err)
{
	const Harness__V1__LogoutRequest *r = (const void *)req;
	/* Idempotent: no token, or one we don't know, is already logged out. */
	const char *refresh = strlen(r->refresh_token) <= TOKEN_MAX ? r->refresh_token : NULL;
	hs_error lerr = { 0 };
	int rc = hs_auth_logout(hs_rpc_call_payload(call), refresh, bearer_token(call),
				time_left(call), &lerr);
	if (rc != HS_OK && rc != HS_UNAUTH && rc != HS_NOT_FOUND && rc != HS_CONFLICT)
		return hs_error_set(err, rc, "%s", lerr.msg);
	Harness__V1__LogoutResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	harness__v1__logout_response__init(m);
	*resp = &m->base;
	return HS_OK;
}

static int user_reply(hs_rpc_call *call, const char *id, ProtobufCMessage **resp, hs_error *err)
{
	hs_auth_user u;
	memset(&u, 0, sizeof(u));
	int rc = hs_auth_get_user(hs_rpc_call_payload(call), id, time_left(call), &u, err);
	if (rc == HS_OK) {
		Harness__V1__User *m = user_msg(call, &u);
		if (m == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			*resp = &m->base;
	}
	hs_auth_user_dispose(&u);
	return rc;
}

static int get_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	const Harness__V1__GetUserRequest *r = (const void *)req;
	const hs_rpc_principal *p = hs_rpc_call_principal(call);
	if (r->id[0] == '\0')
		return hs_error_set(err, HS_INVALID, "id: required");
	if (strlen(r->id) > 128)
		return hs_error_set(err, HS_INVALID, "id: longer than 128 characters");
	if (!p->is_admin && strcmp(p->user_id, r->id) != 0)
		return hs_error_set(err, HS_DENIED, "users may only read their own record");
	return user_reply(call, r->id, resp, err);
}

static int who_am_i(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		    hs_error *err)
{
	(void)req;
	return user_reply(call, hs_rpc_call_principal(call)->user_id, resp, err);
}

/* A User reply for u (disposed here). */
static int user_out(hs_rpc_call *call, int rc, hs_auth_user *u, ProtobufCMessage **resp,
		    hs_error *err)
{
	if (rc == HS_OK) {
		Harness__V1__User *m = user_msg(call, u);
		if (m == NULL)
			rc = hs_error_set(err, HS_INTERNAL, "out of memory");
		else
			*resp = &m->base;
	}
	hs_auth_user_dispose(u);
	return rc;
}

static int admin_only(hs_rpc_call *call, const char *what, hs_error *err)
{
	if (!hs_rpc_call_principal(call)->is_admin)
		return hs_error_set(err, HS_DENIED, "only an admin may %s", what);
	return HS_OK;
}

static int create_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const Harness__V1__CreateUserRequest *r = (const void *)req;
	hs_auth_user u;
	memset(&u, 0, sizeof(u));
	int rc = admin_only(call, "create users", err);
	if (rc == HS_OK)
		rc = hs_auth_create_user(hs_rpc_call_payload(call), r->email, r->name, r->role,
					 r->password, &u, err);
	return user_out(call, rc, &u, resp, err);
}

static int disable_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			hs_error *err)
{
	const Harness__V1__DisableUserRequest *r = (const void *)req;
	hs_auth_user u;
	memset(&u, 0, sizeof(u));
	int rc = admin_only(call, "disable users", err);
	if (rc == HS_OK)
		rc = hs_auth_disable_user(hs_rpc_call_payload(call), r->id,
					  hs_rpc_call_principal(call)->user_id, &u, err);
	return user_out(call, rc, &u, resp, err);
}

static int delete_user(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
		       hs_error *err)
{
	const Harness__V1__DeleteUserRequest *r = (const void *)req;
	int rc = admin_only(call, "delete users", err);
	if (rc == HS_OK)
		rc = hs_auth_delete_user(hs_rpc_call_payload(call), r->id,
					 hs_rpc_call_principal(call)->user_id, err);
	if (rc != HS_OK)
		return rc;
	Harness__V1__DeleteUserResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	harness__v1__delete_user_response__init(m);
	*resp = &m->base;
	return HS_OK;
}

/* --- API keys -------------------------------------------------------------- */

static const ProtobufCServiceDescriptor *const served[] = {
	&harness__v1__auth_service__descriptor,
	&harness__v1__sandbox_service__descriptor,
	&harness__v1__checkpoint_service__descriptor,
	&harness__v1__health_service__descriptor,
};

/* Whether an allowed_methods entry names a method of the harness.v1 API
 * (the module checked its shape; only the adapter knows the surface). */
static bool names_served_method(const char *entry)
{
	if (entry[0] == '/')
		entry++;
	const char *slash = strchr(entry, '/');
	if (slash == NULL)
		return false;
	for (size_t i = 0; i < sizeof(served) / sizeof(served[0]); i++) {
		const ProtobufCServiceDescriptor *d = served[i];
		if (strlen(d->name) != (size_t)(slash - entry) ||
		    strncmp(d->name, entry, (size_t)(slash - entry)) != 0)
			continue;
		if (strcmp(slash + 1, "*") == 0)
			return true;
		return protobuf_c_service_descriptor_get_method_by_name(d, slash + 1) != NULL;
	}
	return false;
}

static Harness__V1__ApiKey *api_key_msg(hs_rpc_call *call, const hs_apikey_info *k)
{
	Harness__V1__ApiKey *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		return NULL;
	harness__v1__api_key__init(m);
	m->id = hs_rpc_call_strdup(call, k->id);
	m->name = hs_rpc_call_strdup(call, k->name);
	m->role = hs_rpc_call_strdup(call, k->role);
	m->created_by = hs_rpc_call_strdup(call, k->created_by);
	m->created_at = hs_rpc_timestamp(call, k->created_at_ms);
	if (m->id == NULL || m->name == NULL || m->role == NULL || m->created_by == NULL ||
	    m->created_at == NULL)
		return NULL;
	if ((k->expires_at_ms != 0 &&
	     (m->expires_at = hs_rpc_timestamp(call, k->expires_at_ms)) == NULL) ||
	    (k->last_used_at_ms != 0 &&
	     (m->last_used_at = hs_rpc_timestamp(call, k->last_used_at_ms)) == NULL) ||
	    (k->revoked_at_ms != 0 &&
	     (m->revoked_at = hs_rpc_timestamp(call, k->revoked_at_ms)) == NULL))
		return NULL;
	if (k->n_methods > 0) {
		m->allowed_methods = hs_rpc_call_alloc(call, k->n_methods * sizeof(char *));
		if (m->allowed_methods == NULL)
			return NULL;
		for (size_t i = 0; i < k->n_methods; i++)
			if ((m->allowed_methods[i] = hs_rpc_call_strdup(call, k->methods[i])) == NULL)
				return NULL;
		m->n_allowed_methods = k->n_methods;
	}
	return m;
}

/* Timestamp -> Unix ms (years 1970..9999). */
static int timestamp_ms(const Google__Protobuf__Timestamp *ts, const char *field, int64_t *out,
			hs_error *err)
{
	if (ts->seconds < 0 || ts->seconds > 253402300799LL || ts->nanos < 0 ||
	    ts->nanos > 999999999)
		return hs_error_set(err, HS_INVALID, "%s: out of range", field);
	*out = ts->seconds * 1000 + ts->nanos / 1000000;
	return HS_OK;
}

static hs_apikeys *api_keys(hs_rpc_call *call, hs_error *err)
{
	hs_apikeys *ks = hs_auth_apikeys_lookup(hs_rpc_call_payload(call));
	if (ks == NULL)
		hs_error_set(err, HS_CONFLICT, "API keys need the store");
	return ks;
}

static int create_api_key(hs_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__CreateApiKeyRequest *r = (const void *)req;
	hs_apikeys *ks;
	int rc;
	if ((rc = admin_only(call, "create API keys", err)) != HS_OK ||
	    (ks = api_keys(call, err)) == NULL)
		return rc != HS_OK ? rc : HS_CONFLICT;
	hs_apikey_spec spec = { r->name, r->role, 0, (const char *const *)r->allowed_methods,
				r->n_allowed_methods, hs_rpc_call_principal(call)->user_id };
	if (r->expires_at != NULL &&
	    (rc = timestamp_ms(r->expires_at, "expires_at", &spec.expires_at_ms, err)) != HS_OK)
		return rc;
	if (r->expires_at != NULL && spec.expires_at_ms == 0)
		spec.expires_at_ms = 1; /* the epoch itself: in the past, refused below */
	for (size_t i = 0; i < r->n_allowed_methods && i < HS_APIKEY_METHODS_MAX; i++)
		if (strlen(r->allowed_methods[i]) <= HS_APIKEY_METHOD_MAX &&
		    strchr(r->allowed_methods[i], '/') != NULL &&
		    !names_served_method(r->allowed_methods[i]))
			return hs_error_set(err, HS_INVALID, "allowed_methods: %s is no method of the "
					    "harness.v1 API", r->allowed_methods[i]);
	hs_apikey_info info;
	char *key = NULL;
	if ((rc = hs_apikeys_create(ks, &spec, hs_clock_wall_ms(), &info, &key, err)) != HS_OK)
		return rc;
	Harness__V1__CreateApiKeyResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m != NULL) {
		harness__v1__create_api_key_response__init(m);
		m->id = hs_rpc_call_strdup(call, info.id);
		m->key = hs_rpc_call_strdup(call, key);
		m->api_key = api_key_msg(call, &info);
	}
	sodium_memzero(key, strlen(key));
	free(key);
	hs_apikey_info_dispose(&info);
	if (m == NULL || m->id == NULL || m->key == NULL || m->api_key == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*resp = &m->base;
	return HS_OK;
}

static int list_api_keys(hs_rpc_call *call, const ProtobufCMessage *req, ProtobufCMessage **resp,
			 hs_error *err)
{
	const Harness__V1__ListApiKeysRequest *r = (const void *)req;
	hs_apikeys *ks;
	int rc;
	if ((rc = admin_only(call, "list API keys", err)) != HS_OK ||
	    (ks = api_keys(call, err)) == NULL)
		return rc != HS_OK ? rc : HS_CONFLICT;
	if (r->page_token[0] != '\0' && !hs_apikey_id_ok(r->page_token))
		return hs_error_set(err, HS_INVALID, "page_token: not one ListApiKeys returned");
	if (r->page_size < 0)
		return hs_error_set(err, HS_INVALID, "page_size: must not be negative");
	size_t limit = r->page_size == 0 ? 100 : r->page_size > 1000 ? 1000 : (size_t)r->page_size;
	hs_apikey_info *v = NULL;
	size_t n = 0;
	if ((rc = hs_apikeys_list(ks, r->page_token, limit, r->include_revoked, &v, &n, err)) !=
	    HS_OK)
		return rc;
	Harness__V1__ListApiKeysResponse *m = hs_rpc_call_alloc(call, sizeof(*m));
	if (m == NULL)
		goto oom;
	harness__v1__list_api_keys_response__init(m);
	m->next_page_token = hs_rpc_call_strdup(call, n == limit ? v[n - 1].id : "");
	if (m->next_page_token == NULL ||
	    (n > 0 && (m->api_keys = hs_rpc_call_alloc(call, n * sizeof(*m->api_keys))) == NULL))
		goto oom;
	for (size_t i = 0; i < n; i++)
		if ((m->api_keys[i] = api_key_msg(call, &v[i])) == NULL)
			goto oom;
	m->n_api_keys = n;
	hs_apikey_infos_free(v, n);
	*resp = &m->base;
	return HS_OK;
oom:
	hs_apikey_infos_free(v, n);
	return hs_error_set(err, HS_INTERNAL, "out of memory");
}

static int revoke_api_key(hs_rpc_call *call, const ProtobufCMessage *req,
			  ProtobufCMessage **resp, hs_error *err)
{
	const Harness__V1__RevokeApiKeyRequest *r = (const void *)req;
	hs_apikeys *ks;
	int rc;
	if ((rc = admin_only(call, "revoke API keys", err)) != HS_OK ||
	    (ks = api_keys(call, err)) == NULL)
		return rc != HS_OK ? rc : HS_CONFLICT;
	hs_apikey_info info;
	if ((rc = hs_apikeys_revoke(ks, r->id, hs_clock_wall_ms(), &info, err)) != HS_OK)
		return rc;
	if ((rc = hs_apikeys_revoke_created_by(ks, r->id, hs_clock_wall_ms(), NULL, err)) != HS_OK) {
		hs_apikey_info_dispose(&info);
		return rc;
	}
	Harness__V1__ApiKey *m = api_key_msg(call, &info);
	hs_apikey_info_dispose(&info);
	if (m == NULL)
		return hs_error_set(err, HS_INTERNAL, "out of memory");
	*resp = &m->base;
	return HS_OK;
}

int hs_auth_service_register(hs_rpc_server *srv, hs_auth *auth, hs_error *err)
{
	/* Every handler blocks: argon2id costs tens of milliseconds by design,
	 * and the upstream backend does HTTP. */
	static const hs_rpc_handler handlers[] = {
		{ "Login", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING | HS_RPC_TRY_INLINE, login,
		  NULL },
		{ "Refresh", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, refresh, NULL },
		{ "Logout", HS_RPC_UNARY, HS_RPC_PUBLIC | HS_RPC_BLOCKING, logout, NULL },
		{ "GetUser", HS_RPC_UNARY, HS_RPC_BLOCKING, get_user, NULL },
		{ "WhoAmI", HS_RPC_UNARY, HS_RPC_BLOCKING, who_am_i, NULL },
		{ "CreateUser", HS_RPC_UNARY, HS_RPC_BLOCKING, create_user, NULL },
		{ "DisableUser", HS_RPC_UNARY, HS_RPC_BLOCKING, disable_user, NULL },
		{ "DeleteUser", HS_RPC_UNARY, HS_RPC_BLOCKING, delete_user, NULL },
		{ "CreateApiKey", HS_RPC_UNARY, HS_RPC_BLOCKING, create_api_key, NULL },
		{ "ListApiKeys", HS_RPC_UNARY, HS_RPC_BLOCKING, list_api_keys, NULL },
		{ "RevokeApiKey", HS_RPC_UNARY, HS_RPC_BLOCKING, revoke_api_key, NULL },
	};
	int rc = hs_rpc_server_add_service(srv, &harness__v1__auth_service__descriptor, handlers,
					   sizeof(handlers) / sizeof(handlers[0]), auth, err);
	if (rc == HS_OK) {
		hs_rpc_server_set_authenticator(srv, authenticate, auth);
		hs_rpc_server_set_recheck(srv, recheck, auth);
	}
	return rc;
}
