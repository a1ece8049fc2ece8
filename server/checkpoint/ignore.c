/* .gitignore rules for the workspace scanner: parsed from text the scanner
 * read itself (beneath the workspace, never through a link) and matched as
 * gitignore(5) says. libgit2's own ignore code reads .gitignore files by
 * path (following links, racing renames), which is why this lives here.
 *
 * Semantics (gitignore(5)): blank lines and lines starting with '#' are
 * skipped; trailing spaces are dropped unless escaped; '!' negates; a
 * trailing '/' matches directories only; a pattern with no other '/' matches
 * the base name at any depth below its .gitignore, any other pattern the
 * path relative to that .gitignore's directory (a leading '/' only anchors).
 * '*', '?' and '[...]' never match '/'; "**" as a whole path component
 * matches any number of directories. The deepest .gitignore and within it
 * the last matching line decide; a directory that is ignored is never
 * entered, so nothing inside it can be re-included (the scanner's part).
 *
 * Bounds: a .gitignore is read up to HS_CKPT__IGNORE_FILE_MAX bytes, lines
 * beyond HS_CKPT__IGNORE_LINE_MAX bytes are skipped, the rules in force at
 * once (a directory and its ancestors) are bounded in bytes and patterns
 * (past that the checkpoint is refused: every path is matched against every
 * rule in force), and matching recursion is bounded (a pathological pattern
 * matches nothing rather than spinning). */
#include "checkpoint_internal.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { PAT_NEGATE = 1u << 0, PAT_DIR_ONLY = 1u << 1, PAT_BASENAME = 1u << 2 };

typedef struct ignore_rule {
	const char *text; /* into the level's buffer */
	unsigned flags;
} ignore_rule;

struct hs_ckpt__ignore_level {
	_Atomic unsigned refs; /* stacks holding it (a parallel walk shares levels) */
	char *base; /* "" or "dir/sub/" */
	size_t base_len;
	char *buf;  /* the patterns' text, NUL-separated */
	size_t len; /* bytes of the .gitignore */
	ignore_rule *v;
	size_t n;
};

/* ---- matching -------------------------------------------------------------- */

enum { WM_MATCH = 0, WM_NOMATCH = 1, WM_GIVE_UP = 2, WM_BACK_TO_STARSTAR = 3 };
#define WM_DEPTH_MAX 200

static bool class_member(const char *name, size_t len, unsigned char c)
{
#define CLS(n, f) if (len == sizeof(n) - 1 && memcmp(name, n, len) == 0) return f(c) != 0
	CLS("alnum", isalnum);
	CLS("alpha", isalpha);
	CLS("blank", isblank);
	CLS("cntrl", iscntrl);
	CLS("digit", isdigit);
	CLS("graph", isgraph);
	CLS("lower", islower);
	CLS("print", isprint);
	CLS("punct", ispunct);
	CLS("space", isspace);
	CLS("upper", isupper);
	CLS("xdigit", isxdigit);
#undef CLS
	return false;
}

/* A bracket expression at *pp (just past '['); advances *pp to its ']'.
 * WM_MATCH / WM_NOMATCH for c, WM_GIVE_UP when the bracket never closes. */
static int match_class(const char **pp, unsigned char c)
{
	const char *p = *pp;
	bool negated = false, hit = false;
	if (*p == '!' || *p == '^') {
		negated = true;
		p++;
	}
	for (bool first = true;; first = false, p++) {
		unsigned char lo = (unsigned char)*p;
		if (lo == '\0')
			return WM_GIVE_UP;
		if (lo == ']' && !first)
			break;
		if (lo == '[' && p[1] == ':') {
			const char *end = strstr(p + 2, ":]");
			if (end != NULL) {
				if (class_member(p + 2, (size_t)(end - p - 2), c))
					hit = true;
				p = end + 1;
				continue;
			}
		}
		if (lo == '\\') {
			lo = (unsigned char)*++p;
			if (lo == '\0')
				return WM_GIVE_UP;
		}
		if (p[1] == '-' && p[2] != ']' && p[2] != '\0') {
			unsigned char hi = (unsigned char)p[2];
			p += 2;
			if (hi == '\\') {
				hi = (unsigned char)*++p;
				if (hi == '\0')
					return WM_GIVE_UP;
			}
			if (lo <= c && c <= hi)
				hit = true;
		} else if (lo == c) {
			hit = true;
		}
	}
	*pp = p;
	return hit != negated ? WM_MATCH : WM_NOMATCH;
}

/* pat against text, '/' significant (git's wildmatch with WM_PATHNAME).
 * start: the beginning of the whole pattern, to see whether a "**" opens a
 * path component. The two give-up codes prune the search like git's: a
 * single '*' cannot get past a '/', so trying it further along is pointless
 * until an enclosing "**". */
static int wild(const char *pat, const char *text, const char *start, int depth)
{
	if (depth > WM_DEPTH_MAX)
		return WM_GIVE_UP;
	for (; *pat; pat++, text++) {
		unsigned char p = (unsigned char)*pat, t = (unsigned char)*text;
		if (t == '\0' && p != '*')
			return WM_GIVE_UP;
		if (p == '\\') {
			if ((unsigned char)*++pat != t || t == '\0')
				return WM_NOMATCH;
			continue;
		}
		if (p == '?') {
			if (t == '/')
				return WM_NOMATCH;
			continue;
		}
		if (p == '[') {
			if (t == '/')
				return WM_NOMATCH;
			pat++;
			int r = match_class(&pat, t);
			if (r != WM_MATCH)
				return r;
			continue;
		}
		if (p != '*') {
			if (p != t)
				return WM_NOMATCH;
			continue;
		}
		/* One or more stars. */
		const char *first_star = pat;
		while (pat[1] == '*')
			pat++;
		bool slash_ok = false;
		if (pat > first_star) { /* "**" */
			bool opens = first_star == start || first_star[-1] == '/';
			bool closes = pat[1] == '\0' || pat[1] == '/';
			if (opens && closes) {
				/* "**" + "/" may match no directory at all. */
				if (pat[1] == '/' && wild(pat + 2, text, start, depth + 1) == WM_MATCH)
					return WM_MATCH;
				slash_ok = true;
			}
		}
		pat++; /* past the stars */
		if (*pat == '\0')
			return slash_ok || strchr(text, '/') == NULL ? WM_MATCH : WM_NOMATCH;
		if (!slash_ok && *pat == '/') {
			/* "*" then "/": the rest of this component, then the slash. */
			const char *slash = strchr(text, '/');
			if (slash == NULL)
				return WM_NOMATCH;
			text = slash; /* the loop matches pat's '/' against it */
			pat--;        /* ... after stepping both */
			text--;
			continue;
		}
		for (;; text++) {
			int r = wild(pat, text, start, depth + 1);
			if (r != WM_NOMATCH && !(slash_ok && r == WM_BACK_TO_STARSTAR))
				return r;
			if (*text == '\0')
				return WM_GIVE_UP;
			if (!slash_ok && *text == '/')
				return WM_BACK_TO_STARSTAR;
		}
	}
	return *text == '\0' ? WM_MATCH : WM_NOMATCH;
}

bool hs_ckpt__wildmatch(const char *pattern, const char *text)
{
	return wild(pattern, text, pattern, 0) == WM_MATCH;
}

/* ---- parsing ---------------------------------------------------------------- */

/* Drop trailing spaces that are not escaped with a backslash. */
static size_t trim_trailing_spaces(const char *s, size_t n)
{
	size_t keep = n;
	while (keep > 0 && s[keep - 1] == ' ') {
		size_t bs = 0;
		for (size_t i = keep - 1; i > 0 && s[i - 1] == '\\'; i--)
			bs++;
		if (bs % 2 == 1)
			break; /* "\ " : an escaped space ends the trim */
		keep--;
	}
	return keep;
}

static int reserve(hs_ckpt__ignore *ig, size_t want)
{
	if (want <= ig->cap)
		return 0;
	size_t ncap = ig->cap ? ig->cap : 8;
	while (ncap < want)
		ncap *= 2;
	hs_ckpt__ignore_level **nv = realloc(ig->v, ncap * sizeof(*nv));
	if (nv == NULL)
		return -1;
	ig->v = nv;
	ig->cap = ncap;
	return 0;
}

static void level_release(hs_ckpt__ignore_level *lv)
{
	if (atomic_fetch_sub_explicit(&lv->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(lv->base);
	free(lv->buf);
	free(lv->v);
	free(lv);
}

int hs_ckpt__ignore_copy(hs_ckpt__ignore *dst, const hs_ckpt__ignore *src)
{
	memset(dst, 0, sizeof(*dst));
	if (src->n && reserve(dst, src->n) != 0)
		return -1;
	for (size_t i = 0; i < src->n; i++) {
		atomic_fetch_add_explicit(&src->v[i]->refs, 1, memory_order_relaxed);
		dst->v[i] = src->v[i];
	}
	dst->n = src->n;
	dst->text_bytes = src->text_bytes;
	dst->rules = src->rules;
	return 0;
}

int hs_ckpt__ignore_push(hs_ckpt__ignore *ig, const char *base, const char *text, size_t len)
{
	hs_ckpt__ignore_level lv = { 0 };
	if (reserve(ig, ig->n + 1) != 0)
		return -1;
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += text[i] == '\n';
	if ((lv.base = strdup(base)) == NULL || (lv.buf = malloc(len + 1)) == NULL ||
	    (lv.v = calloc(lines, sizeof(*lv.v))) == NULL)
		goto oom;
	lv.base_len = strlen(base);
	memcpy(lv.buf, text, len);
	lv.buf[len] = '\0';
	for (char *line = lv.buf; line != NULL;) {
		char *nl = memchr(line, '\n', (size_t)(lv.buf + len - line));
		if (nl != NULL)
			*nl = '\0';
		char *next = nl ? nl + 1 : NULL;
		size_t n = strlen(line); /* a NUL byte ends the line early */
		if (n > 0 && line[n - 1] == '\r')
			n--;
		n = trim_trailing_spaces(line, n);
		line[n] = '\0';
		unsigned flags = 0;
		char *p = line;
		if (n == 0 || n > HS_CKPT__IGNORE_LINE_MAX || p[0] == '#')
			goto next_line;
		if (p[0] == '!') {
			flags |= PAT_NEGATE;
			p++;
			n--;
		}
		if (n > 0 && p[n - 1] == '/') {
			flags |= PAT_DIR_ONLY;
			p[--n] = '\0';
		}
		if (n == 0)
			goto next_line;
		if (strchr(p, '/') == NULL)
			flags |= PAT_BASENAME;
		else if (p[0] == '/')
			p++; /* anchored: matched against the path from the .gitignore's dir */
		if (p[0] == '\0')
			goto next_line;
		lv.v[lv.n].text = p;
		lv.v[lv.n].flags = flags;
		lv.n++;
next_line:
		line = next;
	}
	if (ig->text_bytes + len > HS_CKPT__IGNORE_TEXT_MAX ||
	    ig->rules + lv.n > HS_CKPT__IGNORE_RULES_MAX) {
		free(lv.base);
		free(lv.buf);
		free(lv.v);
		return -2;
	}
	lv.len = len;
	hs_ckpt__ignore_level *heap = malloc(sizeof(*heap));
	if (heap == NULL)
		goto oom;
	*heap = lv;
	atomic_init(&heap->refs, 1);
	ig->text_bytes += len;
	ig->rules += lv.n;
	ig->v[ig->n++] = heap;
	return 0;
oom:
	free(lv.base);
	free(lv.buf);
	free(lv.v);
	return -1;
}

void hs_ckpt__ignore_pop(hs_ckpt__ignore *ig)
{
	if (ig->n == 0)
		return;
	hs_ckpt__ignore_level *lv = ig->v[--ig->n];
	ig->text_bytes -= lv->len;
	ig->rules -= lv->n;
	level_release(lv);
}

void hs_ckpt__ignore_dispose(hs_ckpt__ignore *ig)
{
	while (ig->n > 0)
		hs_ckpt__ignore_pop(ig);
	free(ig->v);
	memset(ig, 0, sizeof(*ig));
}

bool hs_ckpt__ignored(const hs_ckpt__ignore *ig, const char *path, bool is_dir)
{
	const char *slash = strrchr(path, '/');
	const char *basename = slash ? slash + 1 : path;
	for (size_t l = ig->n; l-- > 0;) {
		const hs_ckpt__ignore_level *lv = ig->v[l];
		/* Levels are the path's ancestors (the scanner pushes and pops as it
		 * walks), so path starts with base. */
		if (strncmp(path, lv->base, lv->base_len) != 0)
			continue;
		const char *rel = path + lv->base_len;
		for (size_t i = lv->n; i-- > 0;) {
			const ignore_rule *pt = &lv->v[i];
			if ((pt->flags & PAT_DIR_ONLY) && !is_dir)
				continue;
			bool hit = (pt->flags & PAT_BASENAME) ? hs_ckpt__wildmatch(pt->text, basename)
							      : hs_ckpt__wildmatch(pt->text, rel);
			if (hit)
				return (pt->flags & PAT_NEGATE) == 0;
		}
	}
	return false;
}
