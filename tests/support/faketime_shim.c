/* Preloaded before libfaketime for the clock drift test (test_clock_drift.py).

   libfaketime 0.9.10 fakes CLOCK_MONOTONIC but does not intercept sem_clockwait (glibc 2.30),
   which CPython 3.10+ uses for every lock and Event timeout; with a rate ("x0.8") its faked
   monotonic clock also counts from the wall clock's epoch, so the absolute deadline CPython
   passes never arrives and threads hang. This turns the faked deadline into a real one:
   what is left on the faked clock, divided by the rate in FAKETIME, from the real clock. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double rate(void) {
    const char *spec = getenv("FAKETIME");
    const char *x = spec ? strchr(spec, 'x') : NULL;
    double r = x ? atof(x + 1) : 1.0;
    return r > 0 ? r : 1.0;
}

int sem_clockwait(sem_t *sem, clockid_t clock, const struct timespec *abstime) {
    static int (*real)(sem_t *, clockid_t, const struct timespec *);
    if (!real) real = (int (*)(sem_t *, clockid_t, const struct timespec *))dlsym(RTLD_NEXT, "sem_clockwait");
    struct timespec faked, now, deadline;
    clock_gettime(clock, &faked);             /* libfaketime's */
    syscall(SYS_clock_gettime, clock, &now);  /* the kernel's */
    double left = (double)(abstime->tv_sec - faked.tv_sec) + (abstime->tv_nsec - faked.tv_nsec) / 1e9;
    long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec
                 + (left > 0 ? (long long)(left / rate() * 1e9) : 0);
    deadline.tv_sec = ns / 1000000000LL;
    deadline.tv_nsec = ns % 1000000000LL;
    return real(sem, clock, &deadline);
}
