/* libcurl's process-wide initialisation, done once whoever asks first
 * (auth upstream, the Firecracker API client, webhooks): curl_global_init
 * is not thread-safe, so it must never run twice or concurrently. */
#ifndef HS_COMMON_CURL_ONCE_H
#define HS_COMMON_CURL_ONCE_H

#include "error.h"

/* HS_OK, or HS_INTERNAL (the same answer to every caller) if libcurl could
 * not initialise. */
int hs_curl_global_init(hs_error *err);

#endif
