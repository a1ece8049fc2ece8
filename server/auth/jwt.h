/* JSON Web Tokens (RFC 7519) for access tokens: HS256, RS256 and ES256 over
 * OpenSSL 3 EVP. The algorithm is pinned by the key: a token whose header
 * names any other alg (including "none") is refused, so a public RSA key can
 * never be used as an HMAC secret. Keys are immutable after creation and may
 * be shared by any number of threads. */
#ifndef HS_AUTH_JWT_H
#define HS_AUTH_JWT_H

#include <stddef.h>

#include "error.h"

#define HS_JWT_MAX_LEN 8192     /* longest token accepted or produced */
#define HS_JWT_HMAC_MIN_KEY 32  /* bytes; RFC 7518 3.2: key >= hash size */
#define HS_JWT_DEFAULT_LEEWAY 30 /* seconds of clock skew for exp/nbf/iat */

typedef enum hs_jwt_alg {
	HS_JWT_HS256 = 1,
	HS_JWT_RS256 = 2,
	HS_JWT_ES256 = 3,
} hs_jwt_alg;

typedef struct hs_jwt_key hs_jwt_key;

/* Claims of a verified token. Strings are heap memory owned by the struct
 * (NULL when the claim is absent, except sub which is always set);
 * release with hs_jwt_claims_dispose. */
typedef struct hs_jwt_claims {
	char *sub;
	char *role;
	char *email;
	char *jti;
	char *sid;     /* session: the refresh-token family the token came from */
	long long exp; /* Unix seconds */
	long long iat; /* 0 when absent */
} hs_jwt_claims;

void hs_jwt_claims_dispose(hs_jwt_claims *claims);

/* "HS256" -> HS_JWT_HS256 ...; HS_INVALID for anything else (incl. "none"). */
int hs_jwt_alg_parse(const char *name, hs_jwt_alg *out, hs_error *err);
const char *hs_jwt_alg_name(hs_jwt_alg alg);

/* An HS256 key from a secret of at least HS_JWT_HMAC_MIN_KEY bytes (copied). */
int hs_jwt_key_new_hmac(hs_jwt_key **out, const void *secret, size_t len, hs_error *err);

/* An RS256 (RSA >= 2048 bits) or ES256 (P-256) key from PEM text: a public
 * key ("PUBLIC KEY") verifies only, a private key ("PRIVATE KEY", PKCS#8,
 * or the traditional RSA/EC forms) signs and verifies. */
int hs_jwt_key_new_pem(hs_jwt_key **out, hs_jwt_alg alg, const char *pem, size_t len,
		       hs_error *err);
/* Same, reading the PEM from a file (at most 64 KiB). */
int hs_jwt_key_load_pem_file(hs_jwt_key **out, hs_jwt_alg alg, const char *path,
			     hs_error *err);
void hs_jwt_key_free(hs_jwt_key *key);
hs_jwt_alg hs_jwt_key_alg(const hs_jwt_key *key);

/* What to put in a new token besides the claims: iss and aud are added when
 * not NULL, and kid to the header. */
typedef struct hs_jwt_sign_opts {
	const char *iss;
	const char *aud;
	const char *kid;
} hs_jwt_sign_opts;

/* Sign claims (sub and exp required; role, email, jti, sid added when not NULL;
 * iat when non-zero). *out is a NUL-terminated heap string the caller frees.
 * HS_INVALID if the key cannot sign (a public key). */
int hs_jwt_sign(const hs_jwt_key *key, const hs_jwt_claims *claims,
		const hs_jwt_sign_opts *opts, char **out, hs_error *err);

/* Verification policy. iss/aud are checked only when not NULL: iss must be
 * equal, aud (a string or an array in the token) must contain aud. now = 0
 * means the current time. */
typedef struct hs_jwt_verify_opts {
	const char *iss;
	const char *aud;
	long long now;
	int leeway_s;
} hs_jwt_verify_opts;

#define HS_JWT_VERIFY_OPTS_INIT { NULL, NULL, 0, HS_JWT_DEFAULT_LEEWAY }

/* Verify signature and claims. HS_OK and *out filled, or HS_UNAUTH with a
 * short reason (never the token) for every bad token: malformed, oversized,
 * other alg, bad signature, expired, not yet valid, wrong iss/aud, missing
 * sub/exp. opts may be NULL (defaults). */
int hs_jwt_verify(const hs_jwt_key *key, const char *token, const hs_jwt_verify_opts *opts,
		  hs_jwt_claims *out, hs_error *err);

/* Verification keys from the members of a JWK (RFC 7517/7518), as a JWKS
 * publishes them: RSA n and e (RS256, at least 2048 bits), or EC P-256 x
 * and y (ES256), each base64url. HS_INVALID for anything else. */
int hs_jwt_key_new_rsa_jwk(hs_jwt_key **out, const char *n, const char *e, hs_error *err);
int hs_jwt_key_new_ec_jwk(hs_jwt_key **out, const char *x, const char *y, hs_error *err);

/* The token's header "kid" into out (cap bytes, printable ASCII), "" when
 * the header has none. Nothing is verified: the kid only picks the key.
 * HS_UNAUTH for a malformed header or kid. */
int hs_jwt_token_kid(const char *token, char *out, size_t cap, hs_error *err);

/* Unpadded base64url (RFC 4648 5) of len bytes: heap string, NULL on OOM. */
char *hs_jwt_b64url_encode(const void *data, size_t len);

#endif
