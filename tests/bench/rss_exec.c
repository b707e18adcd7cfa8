/*
 * rss-exec: runs a command and writes its peak resident set size.
 *
 *   rss-exec OUT_FILE COMMAND [ARG...]
 *
 * Forks, executes COMMAND with the same stdin, stdout and stderr, waits
 * for it and writes its peak RSS in KiB (wait4's ru_maxrss) to OUT_FILE,
 * then exits with its status (128 + the signal that killed it).
 *
 * Why a program of its own: Linux keeps the high-water mark of the memory
 * a process had before exec, and Python starts children with vfork, whose
 * memory before exec is the parent's. So a system started by the
 * benchmark harness would report at least the harness's own peak (2.2 GB
 * by the churn scenario). This small process forks with its own small
 * memory, and what wait4 reports is the command's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: rss-exec OUT_FILE COMMAND [ARG...]\n");
		return 2;
	}
	pid_t pid = fork();
	if (pid < 0) {
		fprintf(stderr, "rss-exec: fork: %s\n", strerror(errno));
		return 2;
	}
	if (pid == 0) {
		execvp(argv[2], argv + 2);
		fprintf(stderr, "rss-exec: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			fprintf(stderr, "rss-exec: wait4: %s\n",
				strerror(errno));
			return 2;
		}
	}
	FILE *f = fopen(argv[1], "w");
	if (f == NULL || fprintf(f, "%ld\n", ru.ru_maxrss) < 0 ||
	    fclose(f) != 0) {
		fprintf(stderr, "rss-exec: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}
