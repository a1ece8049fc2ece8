/* JSON-lines logging on stderr: one object per line with ts, level, module,
 * msg and typed fields. The level is checked before anything is formatted.
 * Never pass tokens, passwords or cookie values as fields. Thread-safe:
 * each line is written with a single write(2). While a thread works for a
 * call (common/trace.h), its lines also carry request_id and trace_id. */
#ifndef HS_COMMON_LOG_H
#define HS_COMMON_LOG_H

#include <stdbool.h>

typedef enum hs_log_level {
	HS_LOG_DEBUG = 0,
	HS_LOG_INFO = 1,
	HS_LOG_WARN = 2,
	HS_LOG_ERROR = 3,
	HS_LOG_OFF = 4,
} hs_log_level;

enum { HS_LOG_T_NONE = 0, HS_LOG_T_STR, HS_LOG_T_INT, HS_LOG_T_DBL, HS_LOG_T_BOOL };

typedef struct hs_log_field {
	const char *key;
	int type;
	const char *s;
	long long i;
	double d;
} hs_log_field;

#define HS_LS(k, v) ((hs_log_field){ (k), HS_LOG_T_STR, (v), 0, 0.0 })
#define HS_LI(k, v) ((hs_log_field){ (k), HS_LOG_T_INT, NULL, (long long)(v), 0.0 })
#define HS_LD(k, v) ((hs_log_field){ (k), HS_LOG_T_DBL, NULL, 0, (double)(v) })
#define HS_LB(k, v) ((hs_log_field){ (k), HS_LOG_T_BOOL, NULL, (v) ? 1 : 0, 0.0 })

extern hs_log_level hs_log_min_level;

/* hs_log(HS_LOG_INFO, "rpc", "call finished", HS_LS("method", m), HS_LI("ms", 3)); */
#define hs_log(lvl, module, msg, ...)                                         \
	do {                                                                  \
		if ((lvl) >= hs_log_min_level) {                              \
			const hs_log_field hs_log_f_[] = { { 0 }, __VA_ARGS__ }; \
			hs_log_emit((lvl), (module), (msg), hs_log_f_ + 1,    \
				    sizeof(hs_log_f_) / sizeof(hs_log_f_[0]) - 1); \
		}                                                             \
	} while (0)

void hs_log_emit(hs_log_level lvl, const char *module, const char *msg,
		 const hs_log_field *fields, unsigned nfields);

/* "debug", "info", "warn", "error", "off" -> level; false if unknown. */
bool hs_log_level_parse(const char *name, hs_log_level *out);

/* Redirect output (tests); fd 2 by default. */
void hs_log_set_fd(int fd);

#endif
