/*
 * Minimal rtnetlink for the runtime (internal to inst_*): veth/macvlan
 * creation straight into a container's netns for nic hot-plug, link
 * deletion, and link/address dumps for state.
 *
 * Sockets inside a container's netns: the calling thread joins the netns
 * with setns(CLONE_NEWNET) (per-thread in Linux), creates the socket, which
 * stays bound to that netns for its life, and joins the daemon's netns again
 * straight away.  No fork, no helper thread, ~10 us.  A failure to return is
 * impossible short of a kernel bug and would leave the thread creating
 * sockets in a container, so it aborts.
 */
#ifndef CELL_DAEMON_INST_NL_H
#define CELL_DAEMON_INST_NL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/error.h"

/* A NETLINK_ROUTE socket in the current netns / in pid's netns; -errno. */
int inst_nl_open(void);
int inst_nl_open_in(pid_t pid);
/* fd of /proc/<pid>/ns/net, O_CLOEXEC; -errno. */
int inst_nl_netns_fd(pid_t pid);

/* ifindex of `name` in the socket's netns; -ENODEV. */
int inst_nl_ifindex(int fd, const char *name);

struct inst_nl_newlink {
	const char *kind;        /* "veth" or "macvlan" */
	const char *name;        /* host end (veth) / the macvlan's name */
	int master;              /* ifindex of the bridge for the host end, 0 none */
	int link;                /* macvlan: ifindex of the parent */
	int netns_fd;            /* macvlan: created inside this netns */
	unsigned mtu;            /* 0: kernel default */
	const char *hwaddr;      /* container side, NULL random */
	/* veth: the peer, created inside peer_netns_fd, named peer_name */
	const char *peer_name;
	int peer_netns_fd;
};
/* RTM_NEWLINK; the new link is up, a veth peer is not (inst_nl_link_up it
 * through a socket in its netns).  0 or -errno (message in err). */
int inst_nl_link_add(int fd, const struct inst_nl_newlink *l, cell_error *err);
int inst_nl_link_up(int fd, int ifindex);
int inst_nl_link_del(int fd, int ifindex);

struct inst_nl_link {
	int index;
	char name[16];
	char kind[16];             /* IFLA_INFO_KIND, "" when none */
	unsigned flags;            /* IFF_* */
	unsigned mtu;
	unsigned char addr[32];
	int addrlen;
	int link;                  /* IFLA_LINK: veth peer / macvlan parent index */
	bool link_other_ns;        /* IFLA_LINK_NETNSID present: `link` is in another netns */
	uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets, rx_errors, tx_errors,
		rx_dropped, tx_dropped;
};
struct inst_nl_addr {
	int index;
	int family;               /* AF_INET / AF_INET6 */
	unsigned char prefixlen;
	unsigned char scope;      /* RT_SCOPE_* */
	char address[48];         /* text */
};
/* Dump all links / addresses of the socket's netns; *out is malloc'd. */
int inst_nl_links(int fd, struct inst_nl_link **out, size_t *n);
int inst_nl_addrs(int fd, struct inst_nl_addr **out, size_t *n);

#endif
