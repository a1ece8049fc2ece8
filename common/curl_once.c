/* libcurl's global init, once (curl_once.h). */
#include "curl_once.h"

#include <curl/curl.h>
#include <pthread.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static CURLcode result = CURLE_FAILED_INIT;

static void init(void)
{
	result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int hs_curl_global_init(hs_error *err)
{
	pthread_once(&once, init);
	if (result != CURLE_OK)
		return hs_error_set(err, HS_INTERNAL, "libcurl: %s", curl_easy_strerror(result));
	return HS_OK;
}
