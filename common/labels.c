/* Labels and selectors: one rule (labels.h). */
#include "labels.h"

#include <string.h>

#include "utf8.h"

static bool key_ok(const char *k)
{
	size_t n = k ? strlen(k) : 0;
	return n >= 1 && n <= HS_LABEL_KEY_MAX &&
	       strspn(k, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-") == n;
}

static bool value_ok(const char *v)
{
	size_t n = v ? strlen(v) : 0;
	if (n > HS_LABEL_VALUE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return false;
	return n == 0 || hs_utf8_valid(v, NULL);
}

int hs_labels_check(const char *field, const hs_label *labels, size_t n, hs_error *err)
{
	if (n > HS_LABELS_MAX)
		return hs_error_set(err, HS_INVALID, "%s: at most %d entries", field, HS_LABELS_MAX);
	for (size_t i = 0; i < n; i++) {
		if (!key_ok(labels[i].key))
			return hs_error_set(err, HS_INVALID,
					    "%s: key \"%.63s\" must be 1-%d of [A-Za-z0-9._/-]", field,
					    labels[i].key ? labels[i].key : "", HS_LABEL_KEY_MAX);
		if (!value_ok(labels[i].value))
			return hs_error_set(err, HS_INVALID,
					    "%s[%s]: value longer than %d bytes, not printable or not UTF-8",
					    field, labels[i].key, HS_LABEL_VALUE_MAX);
		for (size_t j = 0; j < i; j++)
			if (strcmp(labels[j].key, labels[i].key) == 0)
				return hs_error_set(err, HS_INVALID, "%s[%s]: given twice", field,
						    labels[i].key);
	}
	return HS_OK;
}

bool hs_labels_match(const hs_label *labels, size_t n, const hs_label *selector, size_t n_sel)
{
	for (size_t s = 0; s < n_sel; s++) {
		bool found = false;
		for (size_t i = 0; i < n && !found; i++)
			found = strcmp(labels[i].key, selector[s].key) == 0 &&
				strcmp(labels[i].value, selector[s].value) == 0;
		if (!found)
			return false;
	}
	return true;
}
