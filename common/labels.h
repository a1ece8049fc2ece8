/* The one rule for labels (tasks and sandboxes): at most 64 pairs; keys
 * 1-63 of [A-Za-z0-9._/-]; values at most 256 bytes of printable UTF-8
 * text (no control characters). Selectors match when every selector pair is
 * present with an equal value. */
#ifndef HS_COMMON_LABELS_H
#define HS_COMMON_LABELS_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

#define HS_LABELS_MAX 64
#define HS_LABEL_KEY_MAX 63
#define HS_LABEL_VALUE_MAX 256

typedef struct hs_label {
	const char *key;
	const char *value;
} hs_label;

/* HS_OK, or HS_INVALID naming field ("labels: ...", "labels[k]: ..."):
 * too many pairs, a bad key or value, a key given twice. */
int hs_labels_check(const char *field, const hs_label *labels, size_t n, hs_error *err);

/* Does a set of labels satisfy every pair of the selector? */
bool hs_labels_match(const hs_label *labels, size_t n, const hs_label *selector, size_t n_sel);

#endif
