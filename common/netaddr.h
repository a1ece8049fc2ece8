/* Client addresses, one rule for harnessd and harness-gateway: IP text in
 * canonical form, CIDR lists of trusted proxies, and who the client is
 * behind them (X-Forwarded-For).
 *
 * The client behind trusted proxies is the right-most X-Forwarded-For entry
 * that is not itself a trusted proxy: every proxy appends the address it
 * saw, so entries to the left of the first untrusted one were written by
 * the client and prove nothing. Pure functions, thread-safe. */
#ifndef HS_COMMON_NETADDR_H
#define HS_COMMON_NETADDR_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define HS_IP_TEXT_MAX 48 /* INET6_ADDRSTRLEN + NUL, rounded up */
#define HS_CIDR_LIST_MAX 32
#define HS_XFF_MAX 1024   /* longer X-Forwarded-For values are ignored */

typedef struct hs_cidr {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network byte order; 4 bytes used for AF_INET */
	int bits;               /* prefix length */
} hs_cidr;

typedef struct hs_cidr_list {
	size_t n;
	hs_cidr v[HS_CIDR_LIST_MAX];
} hs_cidr_list;

/* Parses "10.0.0.0/8, 192.168.1.5, ::1, fd00::/8" (a bare address is a
 * host: /32 or /128; empty list = none). HS_INVALID naming `what` and the
 * bad entry; host bits set under the prefix are refused (a typo, usually). */
int hs_cidr_list_parse(hs_cidr_list *out, const char *list, const char *what, hs_error *err);

/* Whether the IP text s[0..n) lies in one of the list's networks. An
 * IPv4-mapped IPv6 address ("::ffff:10.1.2.3") counts as its IPv4 form. */
bool hs_cidr_list_has(const hs_cidr_list *l, const char *s, size_t n);

/* Canonical text of the IP s[0..n) (inet_ntop of inet_pton; IPv4-mapped
 * IPv6 becomes IPv4) into out (cap >= HS_IP_TEXT_MAX). false if s is not an
 * IP address. */
bool hs_ip_canonical(const char *s, size_t n, char *out, size_t cap);

/* The bare IP of a gRPC C-core peer string ("ipv4:1.2.3.4:5678",
 * "ipv6:[::1]:5678", also percent-encoded brackets) in canonical form.
 * false for anything else (unix sockets, garbage). */
bool hs_grpc_peer_ip(const char *peer, char *out, size_t cap);

/* The client address: peer_ip (canonical) unless it is in trusted; then the
 * right-most entry of xff that is not in trusted. When every entry is
 * trusted, an entry is not an IP, or xff is longer than HS_XFF_MAX, the
 * peer is used. out (cap >= HS_IP_TEXT_MAX) is canonical. */
void hs_client_address(const hs_cidr_list *trusted, const char *peer_ip, const char *xff,
		       char *out, size_t cap);

#endif
