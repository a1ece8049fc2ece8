/* TLS for the server: gRPC's SSL server credentials with a certificate
 * config fetcher, so certificates are reloaded when their files change,
 * without a restart and without touching established connections.
 *
 * gRPC calls the fetcher before every new handshake (serialised by its own
 * lock). The fetcher stat()s the three files (following links: Kubernetes
 * updates a Secret volume by swapping a symlinked directory, which changes
 * the inode behind the unchanged path) and only when that signature
 * changed reads and checks them: the chain parses, the key matches its
 * first certificate, the client CA parses. A set that does not check out
 * (half-written, or a key that does not match the certificate yet) is
 * logged once and skipped; the previous certificate keeps serving until a
 * consistent set appears. Connections already open keep the certificate
 * they were established with (TLS never renegotiates here). */
#include <errno.h>
#include <grpc/grpc_security.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "rpc_internal.h"

#define TLS_FILE_MAX (1u << 20) /* 1 MiB of PEM is far beyond any real chain */

typedef struct file_sig {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	bool present;
} file_sig;

struct hs_rpc_tls {
	pthread_mutex_t mu;
	char *paths[3]; /* cert chain, key, client CA (NULL = none) */
	grpc_ssl_client_certificate_request_type request;
	file_sig sig[3]; /* of the set last tried (loaded or refused) */
	char *pem[3];    /* the set checked at start, handed over at the first fetch */
	bool first_served;
	unsigned reloads;
};

enum { F_CERT = 0, F_KEY = 1, F_CA = 2 };
static const char *const file_names[3] = { "tls cert", "tls key", "tls client ca" };

static void wipe_free(char *p)
{
	if (p != NULL) {
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
}

static void signature(hs_rpc_tls *t, file_sig out[3])
{
	memset(out, 0, 3 * sizeof(*out));
	for (int i = 0; i < 3; i++) {
		struct stat st;
		if (t->paths[i] == NULL || stat(t->paths[i], &st) != 0)
			continue;
		out[i] = (file_sig){ st.st_dev, st.st_ino, st.st_size, st.st_mtim, true };
	}
}

static bool sig_equal(const file_sig a[3], const file_sig b[3])
{
	for (int i = 0; i < 3; i++) {
		if (a[i].present != b[i].present || a[i].dev != b[i].dev || a[i].ino != b[i].ino ||
		    a[i].size != b[i].size || a[i].mtime.tv_sec != b[i].mtime.tv_sec ||
		    a[i].mtime.tv_nsec != b[i].mtime.tv_nsec)
			return false;
	}
	return true;
}

int hs_rpc__read_pem(const char *path, const char *what, char **out, hs_error *err)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return hs_error_set(err, HS_INVALID, "%s %s: %s", what, path, strerror(errno));
	char *buf = malloc(TLS_FILE_MAX + 1);
	size_t n = buf != NULL ? fread(buf, 1, TLS_FILE_MAX + 1, f) : 0;
	fclose(f);
	if (buf == NULL)
		return hs_error_set(err, HS_INTERNAL, "%s: out of memory", what);
	if (n == 0 || n > TLS_FILE_MAX) {
		OPENSSL_cleanse(buf, n > TLS_FILE_MAX ? TLS_FILE_MAX + 1 : n);
		free(buf);
		return hs_error_set(err, HS_INVALID, "%s %s: empty or larger than 1 MiB", what, path);
	}
	buf[n] = '\0';
	*out = buf;
	return HS_OK;
}

/* The chain's first certificate, the key, and whether they match; the CA
 * bundle parses. */
static int check_set(char *pem[3], hs_error *err)
{
	int rc = HS_OK;
	BIO *b = BIO_new_mem_buf(pem[F_CERT], -1);
	X509 *cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(pem[F_KEY], -1);
	EVP_PKEY *key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (cert == NULL)
		rc = hs_error_set(err, HS_INVALID, "tls cert: no PEM certificate");
	else if (key == NULL)
		rc = hs_error_set(err, HS_INVALID, "tls key: no PEM private key (unencrypted)");
	else if (X509_check_private_key(cert, key) != 1)
		rc = hs_error_set(err, HS_INVALID, "tls key: does not match the certificate");
	if (rc == HS_OK && pem[F_CA] != NULL) {
		b = BIO_new_mem_buf(pem[F_CA], -1);
		X509 *ca = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
		if (ca == NULL)
			rc = hs_error_set(err, HS_INVALID, "tls client ca: no PEM certificate");
		X509_free(ca);
	}
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

/* Reads and checks the three files into pem[] (freed on error). */
static int load_set(hs_rpc_tls *t, char *pem[3], hs_error *err)
{
	int rc = HS_OK;
	memset(pem, 0, 3 * sizeof(*pem));
	for (int i = 0; i < 3 && rc == HS_OK; i++)
		if (t->paths[i] != NULL)
			rc = hs_rpc__read_pem(t->paths[i], file_names[i], &pem[i], err);
	if (rc == HS_OK)
		rc = check_set(pem, err);
	if (rc != HS_OK)
		for (int i = 0; i < 3; i++) {
			wipe_free(pem[i]);
			pem[i] = NULL;
		}
	return rc;
}

static grpc_ssl_server_certificate_config *make_config(char *pem[3])
{
	grpc_ssl_pem_key_cert_pair pair = { pem[F_KEY], pem[F_CERT] };
	/* gRPC copies the strings. Its fetcher path asserts that roots are
	 * given even when no client certificate is requested; then they are
	 * never used (no CertificateRequest is sent, nothing is verified), so
	 * the server's own chain stands in for them. */
	return grpc_ssl_server_certificate_config_create(pem[F_CA] ? pem[F_CA] : pem[F_CERT], &pair,
							 1);
}

static grpc_ssl_certificate_config_reload_status fetch(void *payload,
						       grpc_ssl_server_certificate_config **config)
{
	hs_rpc_tls *t = payload;
	grpc_ssl_certificate_config_reload_status st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
	pthread_mutex_lock(&t->mu);
	if (!t->first_served) {
		*config = make_config(t->pem);
		for (int i = 0; i < 3; i++) {
			wipe_free(t->pem[i]);
			t->pem[i] = NULL;
		}
		t->first_served = true;
		st = *config != NULL ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW
				     : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
		goto done;
	}
	file_sig now[3];
	signature(t, now);
	if (sig_equal(now, t->sig))
		goto done;
	memcpy(t->sig, now, sizeof(now));
	char *pem[3];
	hs_error err = { 0 };
	if (load_set(t, pem, &err) != HS_OK) {
		hs_log(HS_LOG_WARN, "rpc", "tls: new certificate files not usable (yet): still serving "
		       "the previous certificate", HS_LS("error", err.msg));
		goto done;
	}
	*config = make_config(pem);
	for (int i = 0; i < 3; i++)
		wipe_free(pem[i]);
	if (*config != NULL) {
		st = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
		t->reloads++;
		hs_log(HS_LOG_INFO, "rpc", "tls: certificate reloaded", HS_LS("cert", t->paths[F_CERT]),
		       HS_LI("reloads", t->reloads));
	}
done:
	pthread_mutex_unlock(&t->mu);
	return st;
}

void hs_rpc__tls_free(hs_rpc_tls *t)
{
	if (t == NULL)
		return;
	for (int i = 0; i < 3; i++) {
		free(t->paths[i]);
		wipe_free(t->pem[i]);
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

int hs_rpc__tls_new(hs_rpc_tls **out, const hs_rpc_config *cfg, hs_error *err)
{
	bool cert = cfg->tls_cert_file != NULL && cfg->tls_cert_file[0] != '\0';
	bool key = cfg->tls_key_file != NULL && cfg->tls_key_file[0] != '\0';
	bool ca = cfg->tls_client_ca_file != NULL && cfg->tls_client_ca_file[0] != '\0';
	if (!cert && !key && !ca) {
		*out = NULL;
		return HS_OK;
	}
	if (!cert || !key)
		return hs_error_set(err, HS_INVALID, "tls: --tls-cert and --tls-key go together%s",
				    ca ? " (--tls-client-ca needs both)" : "");
	if (cfg->tls_client_auth != HS_RPC_TLS_CLIENT_REQUEST &&
	    cfg->tls_client_auth != HS_RPC_TLS_CLIENT_REQUIRE)
		return hs_error_set(err, HS_INVALID, "tls client auth: request or require");
	hs_rpc_tls *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return hs_error_set(err, HS_INTERNAL, "tls: out of memory");
	pthread_mutex_init(&t->mu, NULL);
	const char *paths[3] = { cfg->tls_cert_file, cfg->tls_key_file,
				 ca ? cfg->tls_client_ca_file : NULL };
	for (int i = 0; i < 3; i++)
		if (paths[i] != NULL && (t->paths[i] = strdup(paths[i])) == NULL) {
			hs_rpc__tls_free(t);
			return hs_error_set(err, HS_INTERNAL, "tls: out of memory");
		}
	t->request = !ca ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
		     : cfg->tls_client_auth == HS_RPC_TLS_CLIENT_REQUEST
			     ? GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY
			     : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
	signature(t, t->sig);
	int rc = load_set(t, t->pem, err);
	if (rc != HS_OK) {
		hs_rpc__tls_free(t);
		return rc;
	}
	*out = t;
	return HS_OK;
}

grpc_server_credentials *hs_rpc__tls_credentials(hs_rpc_tls *t)
{
	grpc_ssl_server_credentials_options *o =
		grpc_ssl_server_credentials_create_options_using_config_fetcher(t->request, fetch, t);
	return o != NULL ? grpc_ssl_server_credentials_create_with_options(o) : NULL;
}
