/* Following harness-node-address (issue 19): when harnessd answers a call
 * UNAVAILABLE with the trailing metadata "harness-node-address: HOST:PORT"
 * (the object lives on another node and this node did not forward the
 * call: a client-certificate caller, the forward bound reached, forwarding
 * off), client.c retries the same call once on a channel to that address.
 *
 * What is followed: exactly one value of that key, which must be HOST:PORT
 * (HOST a DNS name, an IPv4 address or a bracketed IPv6 address; PORT
 * 1-65535 in decimal; at most HS_ERROR_WHERE_MAX - 1 bytes). Anything else
 * (a scheme such as "unix:", a path, user info, a second value, an
 * overlong value) is not followed and the UNAVAILABLE goes to the caller.
 * The channel is made for "dns:///HOST:PORT", so no resolver scheme can be
 * chosen by the server. One hop: the followed call's answer is returned as
 * it is, even another redirect.
 *
 * Channels: the same credentials and channel arguments as the client's own
 * channel (TLS roots, client certificate, server-name override, message
 * size, user agent). With a server-name override the followed node must
 * present a certificate for that name too (the override names the
 * cluster's certificate, which every node of a cluster presents); without
 * one, the followed HOST is checked, as for any target. At most
 * HS_CLIENT_FOLLOW_CHANNELS are kept, least recently used evicted; a peer
 * is reference-counted, so an evicted channel is destroyed only when the
 * last call using it let go of it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>

#include "client_internal.h"

bool hs_client__follow_addr_ok(const char *p, size_t n)
{
	if (n == 0 || n >= HS_ERROR_WHERE_MAX)
		return false;
	/* the port: the digits after the last ':' */
	size_t colon = n;
	while (colon > 0 && p[colon - 1] != ':')
		colon--;
	if (colon == 0 || colon == n || n - colon > 5)
		return false;
	unsigned long port = 0;
	for (size_t i = colon; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		port = port * 10 + (unsigned long)(p[i] - '0');
	}
	if (port == 0 || port > 65535)
		return false;
	size_t hn = colon - 1; /* host: p[0, hn) */
	if (hn == 0)
		return false;
	if (p[0] == '[') { /* [IPv6] */
		if (hn < 3 || p[hn - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < hn; i++) {
			char ch = p[i];
			if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
			      (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.'))
				return false;
		}
		return true;
	}
	/* a DNS name or an IPv4 address: labels of letters, digits and '-',
	 * none empty, none starting or ending with '-' */
	size_t label = 0;
	for (size_t i = 0; i < hn; i++) {
		char ch = p[i];
		if (ch == '.') {
			if (label == 0 || p[i - 1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-'))
			return false;
		if (label == 0 && ch == '-')
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 && p[hn - 1] != '-';
}

bool hs_client__follow_target(const hs_client *c, grpc_status_code code,
			      const grpc_metadata_array *trail, char out[HS_ERROR_WHERE_MAX])
{
	if (c->no_follow || code != GRPC_STATUS_UNAVAILABLE || trail == NULL)
		return false;
	const grpc_slice *v = NULL;
	for (size_t i = 0; i < trail->count; i++) {
		if (grpc_slice_str_cmp(trail->metadata[i].key, HS_ERROR_WHERE_KEY) != 0)
			continue;
		if (v != NULL)
			return false; /* two values: which one? neither */
		v = &trail->metadata[i].value;
	}
	if (v == NULL)
		return false;
	size_t n = GRPC_SLICE_LENGTH(*v);
	const char *p = (const char *)GRPC_SLICE_START_PTR(*v);
	if (!hs_client__follow_addr_ok(p, n))
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

static void *peer_make(void *ctx, const char *target)
{
	hs_client *c = ctx;
	char uri[HS_ERROR_WHERE_MAX + 8];
	if (snprintf(uri, sizeof(uri), "dns:///%s", target) <= 0)
		return NULL;
	grpc_channel_args ca = { c->n_args, c->args };
	return grpc_channel_create(uri, c->creds, &ca);
}

static void peer_destroy(void *ch) { grpc_channel_destroy(ch); }

void hs_client__peers_init(hs_client *c)
{
	hs_refcache_init(&c->peers, c->peer_slots, HS_CLIENT_FOLLOW_CHANNELS, peer_destroy);
}

hs_client__peer *hs_client__peer_acquire(hs_client *c, const char *target)
{
	pthread_mutex_lock(&c->mu);
	hs_client__peer *p = hs_refcache_acquire(&c->peers, target, peer_make, c);
	pthread_mutex_unlock(&c->mu);
	return p;
}

grpc_channel *hs_client__peer_channel(const hs_client__peer *p) { return p->val; }

void hs_client__peer_release(hs_client *c, hs_client__peer *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	hs_refcache_release(&c->peers, p);
	pthread_mutex_unlock(&c->mu);
}

void hs_client__peers_free(hs_client *c) { hs_refcache_clear(&c->peers); }

size_t hs_client__peers_count(hs_client *c)
{
	pthread_mutex_lock(&c->mu);
	size_t n = hs_refcache_count(&c->peers);
	pthread_mutex_unlock(&c->mu);
	return n;
}
