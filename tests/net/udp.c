/* A UDP echo server and client for the network tests. The busybox fixture image has no UDP
 * tool, so the tests build this with `gcc -static` and bind-mount it into the container.
 *
 *   udp serve PORT            answer every datagram with the same bytes, forever
 *   udp ask IP PORT MESSAGE   send MESSAGE, print the answer; exit 1 after 5 s without one
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int usage(void) {
    fprintf(stderr, "usage: udp serve PORT | udp ask IP PORT MESSAGE\n");
    return 2;
}

int main(int argc, char **argv) {
    char buf[65536];
    struct sockaddr_in addr = {.sin_family = AF_INET};
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) {
        perror("socket");
        return 1;
    }
    if (argc == 3 && strcmp(argv[1], "serve") == 0) {
        addr.sin_port = htons(atoi(argv[2]));
        addr.sin_addr.s_addr = htonl(INADDR_ANY);
        if (bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
            perror("bind");
            return 1;
        }
        for (;;) {
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
            if (n >= 0)
                sendto(s, buf, n, 0, (struct sockaddr *)&peer, len);
        }
    }
    if (argc == 5 && strcmp(argv[1], "ask") == 0) {
        if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1)
            return usage();
        addr.sin_port = htons(atoi(argv[3]));
        struct timeval tv = {.tv_sec = 5};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (sendto(s, argv[4], strlen(argv[4]), 0, (struct sockaddr *)&addr, sizeof addr) < 0) {
            perror("sendto");
            return 1;
        }
        ssize_t n = recv(s, buf, sizeof buf - 1, 0);
        if (n < 0) {
            perror("recv");
            return 1;
        }
        buf[n] = 0;
        printf("%s\n", buf);
        return 0;
    }
    return usage();
}
