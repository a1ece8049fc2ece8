/* IP text, CIDR lists and the client behind trusted proxies (netaddr.h). */
#include "netaddr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* inet_pton of s[0..n) into addr; *family AF_INET/AF_INET6; IPv4-mapped
 * IPv6 is turned into AF_INET. */
static bool parse_ip(const char *s, size_t n, int *family, unsigned char addr[16])
{
	char buf[HS_IP_TEXT_MAX];
	if (s == NULL || n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, addr) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, buf, addr) != 1)
		return false;
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
		memmove(addr, addr + 12, 4);
		*family = AF_INET;
	} else {
		*family = AF_INET6;
	}
	return true;
}

bool hs_ip_canonical(const char *s, size_t n, char *out, size_t cap)
{
	int family;
	unsigned char addr[16];
	char buf[HS_IP_TEXT_MAX];
	if (out == NULL || cap < HS_IP_TEXT_MAX || !parse_ip(s, n, &family, addr) ||
	    inet_ntop(family, addr, buf, sizeof(buf)) == NULL)
		return false;
	snprintf(out, cap, "%s", buf);
	return true;
}

static bool in_net(const hs_cidr *c, int family, const unsigned char *addr)
{
	if (c->family != family)
		return false;
	int full = c->bits / 8, rest = c->bits % 8;
	if (memcmp(c->addr, addr, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (addr[full] & mask);
}

bool hs_cidr_list_has(const hs_cidr_list *l, const char *s, size_t n)
{
	int family;
	unsigned char addr[16];
	if (l == NULL || l->n == 0 || !parse_ip(s, n, &family, addr))
		return false;
	for (size_t i = 0; i < l->n; i++)
		if (in_net(&l->v[i], family, addr))
			return true;
	return false;
}

static int parse_one(hs_cidr *c, const char *s, size_t n, const char *what, hs_error *err)
{
	const char *slash = memchr(s, '/', n);
	size_t an = slash ? (size_t)(slash - s) : n;
	if (!parse_ip(s, an, &c->family, c->addr))
		return hs_error_set(err, HS_INVALID, "%s: \"%.*s\" is not an address or CIDR", what,
				    (int)(n > 64 ? 64 : n), s);
	int max = c->family == AF_INET ? 32 : 128;
	/* an IPv4-mapped network ::ffff:a.b.c.d/N is the IPv4 one /N-96 */
	bool mapped = c->family == AF_INET && memchr(s, ':', an) != NULL;
	c->bits = max;
	if (slash != NULL) {
		long bits = 0;
		size_t k = an + 1;
		if (k >= n || n - k > 3)
			goto bad_len;
		for (; k < n; k++) {
			if (s[k] < '0' || s[k] > '9')
				goto bad_len;
			bits = bits * 10 + (s[k] - '0');
		}
		if (mapped)
			bits -= 96;
		if (bits < 0 || bits > max)
			goto bad_len;
		c->bits = (int)bits;
	}
	for (int b = c->bits; b < max; b++)
		if (c->addr[b / 8] & (0x80 >> (b % 8)))
			return hs_error_set(err, HS_INVALID, "%s: \"%.*s\" has host bits set", what,
					    (int)(n > 64 ? 64 : n), s);
	return HS_OK;
bad_len:
	return hs_error_set(err, HS_INVALID, "%s: \"%.*s\" has a bad prefix length", what,
			    (int)(n > 64 ? 64 : n), s);
}

int hs_cidr_list_parse(hs_cidr_list *out, const char *list, const char *what, hs_error *err)
{
	hs_cidr_list l;
	memset(&l, 0, sizeof(l));
	const char *p = list != NULL ? list : "";
	while (*p) {
		const char *end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		const char *s = p, *e = end;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > s) {
			if (l.n == HS_CIDR_LIST_MAX)
				return hs_error_set(err, HS_INVALID, "%s: at most %d entries", what,
						    HS_CIDR_LIST_MAX);
			int rc = parse_one(&l.v[l.n], s, (size_t)(e - s), what, err);
			if (rc != HS_OK)
				return rc;
			l.n++;
		}
		p = *end ? end + 1 : end;
	}
	*out = l;
	return HS_OK;
}

bool hs_grpc_peer_ip(const char *peer, char *out, size_t cap)
{
	const char *s, *e;
	if (peer == NULL)
		return false;
	if (strncmp(peer, "ipv4:", 5) == 0) {
		s = peer + 5;
		e = strrchr(s, ':');
		if (e == NULL)
			e = s + strlen(s);
	} else if (strncmp(peer, "ipv6:[", 6) == 0) {
		s = peer + 6;
		e = strchr(s, ']');
	} else if (strncmp(peer, "ipv6:%5B", 8) == 0 || strncmp(peer, "ipv6:%5b", 8) == 0) {
		s = peer + 8;
		e = strstr(s, "%5D");
		if (e == NULL)
			e = strstr(s, "%5d");
	} else {
		return false;
	}
	if (e == NULL)
		return false;
	/* a zone ("fe80::1%25eth0") is not part of the address */
	const char *pct = memchr(s, '%', (size_t)(e - s));
	if (pct != NULL)
		e = pct;
	return hs_ip_canonical(s, (size_t)(e - s), out, cap);
}

void hs_client_address(const hs_cidr_list *trusted, const char *peer_ip, const char *xff,
		       char *out, size_t cap)
{
	if (out == NULL || cap == 0)
		return;
	if (peer_ip == NULL || !hs_ip_canonical(peer_ip, strlen(peer_ip), out, cap))
		snprintf(out, cap, "%s", peer_ip != NULL ? peer_ip : "");
	if (xff == NULL || strlen(xff) > HS_XFF_MAX || peer_ip == NULL ||
	    !hs_cidr_list_has(trusted, peer_ip, strlen(peer_ip)))
		return;
	const char *end = xff + strlen(xff);
	while (end > xff) {
		const char *start = end;
		while (start > xff && start[-1] != ',')
			start--;
		const char *s = start, *e = end;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		char ip[HS_IP_TEXT_MAX];
		if (!hs_ip_canonical(s, (size_t)(e - s), ip, sizeof(ip)))
			return;
		if (!hs_cidr_list_has(trusted, s, (size_t)(e - s))) {
			snprintf(out, cap, "%s", ip);
			return;
		}
		end = start > xff ? start - 1 : xff;
	}
}
