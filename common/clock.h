/* Clocks, one home: wall time for what is stored or shown, monotonic time
 * for deadlines and durations (it never jumps with NTP). */
#ifndef HS_COMMON_CLOCK_H
#define HS_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t hs_clock_wall_ms(void);  /* ms since the Unix epoch */
int64_t hs_clock_mono_ms(void);  /* CLOCK_MONOTONIC, ms */
int64_t hs_clock_mono_us(void);  /* CLOCK_MONOTONIC, µs */
int64_t hs_clock_mono_ns(void);  /* CLOCK_MONOTONIC, ns */

/* The absolute time ms from now on clock (CLOCK_REALTIME or
 * CLOCK_MONOTONIC, as the condition variable waited on was set up), for
 * pthread_cond_timedwait. */
struct timespec hs_clock_deadline(clockid_t clock, int64_t ms);

#endif
