/* The timed opener of scripts/bench-container-open: opens every file of a
 * directory (sorted by name), reads it to the end, closes it, and prints
 * each open+read+close time in nanoseconds, one line per file ("E errno"
 * for a failure). Static, so the same binary runs in a busybox container
 * and on the host. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: opener DIR\n");
    return 2;
  }
  struct dirent **names;
  int n = scandir(argv[1], &names, NULL, by_name);
  if (n < 0) {
    perror(argv[1]);
    return 1;
  }
  static char buf[65536];
  char path[4096];
  for (int i = 0; i < n; i++) {
    if (names[i]->d_name[0] == '.')
      continue;
    snprintf(path, sizeof path, "%s/%s", argv[1], names[i]->d_name);
    long long t0 = now_ns();
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
      printf("E %d\n", errno);
      continue;
    }
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
    printf("%lld\n", now_ns() - t0);
  }
  return 0;
}
