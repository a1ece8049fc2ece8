/* The user and token result types shared by the auth backends (local and
 * upstream) and the facade. Every string is heap memory owned by the struct;
 * release it with the matching _dispose. */
#ifndef HS_AUTH_USER_H
#define HS_AUTH_USER_H

typedef struct hs_auth_user {
	char *id;
	char *email;
	char *name;
	char *role;              /* "user" or "admin" */
	long long created_at_ms; /* Unix ms; 0 when unknown */
	int disabled;            /* local backend: 1 once disabled */
} hs_auth_user;

typedef struct hs_auth_result {
	hs_auth_user user;
	char *access_token;  /* signed JWT */
	char *refresh_token; /* opaque; never log it */
	long long expires_in; /* access token lifetime, seconds */
} hs_auth_result;

/* Free the strings and zero the struct; NULL and zeroed structs are fine. */
void hs_auth_user_dispose(hs_auth_user *user);
void hs_auth_result_dispose(hs_auth_result *res);

#endif
