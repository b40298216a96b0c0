#include "daemon/inst_nl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/cleanup.h"

#define NL_BUF 8192
#define NL_RECV 32768

struct nlbuf {
	union {
		struct nlmsghdr h;
		char raw[NL_BUF];
	};
};

static atomic_uint nl_seq = 1;

int inst_nl_open(void)
{
	/* No bind: the kernel binds on the first send. */
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	return fd < 0 ? -errno : fd;
}

int inst_nl_netns_fd(pid_t pid)
{
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* This thread's own netns, opened once per thread: state reads come here
 * for every instance of a list. */
static int self_netns(void)
{
	static __thread int fd = -1;

	if (fd < 0)
		fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int inst_nl_open_in(pid_t pid)
{
	int self = self_netns();
	_cleanup_close_ int target = inst_nl_netns_fd(pid);
	int fd;

	if (self < 0)
		return self;
	if (target < 0)
		return target;
	if (setns(target, CLONE_NEWNET) < 0)
		return -errno;
	fd = inst_nl_open();
	if (setns(self, CLONE_NEWNET) < 0)
		abort();   /* see inst_nl.h: never keep a daemon thread in a container */
	return fd;
}

/* ---- message building ------------------------------------------------------ */

static void *nl_start(struct nlbuf *b, int type, int flags, size_t hdrlen)
{
	memset(b->raw, 0, NLMSG_SPACE(hdrlen));
	b->h.nlmsg_len = NLMSG_LENGTH(hdrlen);
	b->h.nlmsg_type = (unsigned short)type;
	b->h.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | flags);
	b->h.nlmsg_seq = atomic_fetch_add(&nl_seq, 1);
	return NLMSG_DATA(&b->h);
}

static struct rtattr *nl_put(struct nlbuf *b, int type, const void *data, size_t len)
{
	size_t off = NLMSG_ALIGN(b->h.nlmsg_len);
	struct rtattr *a = (struct rtattr *)(b->raw + off);

	if (off + RTA_SPACE(len) > sizeof(b->raw))
		return NULL;
	a->rta_type = (unsigned short)type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(a), data, len);
	b->h.nlmsg_len = (unsigned)(off + RTA_ALIGN(a->rta_len));
	return a;
}

static int nl_put_str(struct nlbuf *b, int type, const char *s)
{
	return nl_put(b, type, s, strlen(s) + 1) ? 0 : -E2BIG;
}

static int nl_put_u32(struct nlbuf *b, int type, uint32_t v)
{
	return nl_put(b, type, &v, sizeof(v)) ? 0 : -E2BIG;
}

static struct rtattr *nl_nest(struct nlbuf *b, int type)
{
	return nl_put(b, type, NULL, 0);
}

static void nl_nest_end(struct nlbuf *b, struct rtattr *a)
{
	a->rta_len = (unsigned short)((char *)&b->h + b->h.nlmsg_len - (char *)a);
}

/* ---- talking ------------------------------------------------------------------- */

static int nl_send(int fd, struct nlbuf *b)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

	if (sendto(fd, b->raw, b->h.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -errno;
	return 0;
}

typedef int (*nl_msg_cb)(struct nlmsghdr *h, void *data);

/* Read answers to `seq` until the ack (requests) or NLMSG_DONE (dumps). */
static int nl_recv(int fd, unsigned seq, nl_msg_cb cb, void *data)
{
	_cleanup_free_ char *buf = malloc(NL_RECV);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n = recv(fd, buf, NL_RECV, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				struct nlmsgerr *e = NLMSG_DATA(h);
				return e->error;   /* 0 is the ack */
			}
			if (cb) {
				int rc = cb(h, data);
				if (rc < 0)
					return rc;
			}
		}
	}
}

static int nl_request(int fd, struct nlbuf *b, nl_msg_cb cb, void *data)
{
	int rc;

	b->h.nlmsg_flags |= NLM_F_ACK;
	if ((rc = nl_send(fd, b)) < 0)
		return rc;
	return nl_recv(fd, b->h.nlmsg_seq, cb, data);
}

static int nl_dump(int fd, struct nlbuf *b, nl_msg_cb cb, void *data)
{
	int rc = nl_send(fd, b);
	return rc < 0 ? rc : nl_recv(fd, b->h.nlmsg_seq, cb, data);
}

/* ---- links --------------------------------------------------------------------- */

static int got_index(struct nlmsghdr *h, void *data)
{
	if (h->nlmsg_type == RTM_NEWLINK)
		*(int *)data = ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index;
	return 0;
}

int inst_nl_ifindex(int fd, const char *name)
{
	struct nlbuf b;
	int idx = 0, rc;

	nl_start(&b, RTM_GETLINK, 0, sizeof(struct ifinfomsg));
	if (nl_put_str(&b, IFLA_IFNAME, name) < 0)
		return -E2BIG;
	rc = nl_request(fd, &b, got_index, &idx);
	if (rc < 0)
		return rc == -ENODEV || rc == -EINVAL ? -ENODEV : rc;
	return idx > 0 ? idx : -ENODEV;
}

static int put_hwaddr(struct nlbuf *b, const char *hw)
{
	unsigned char mac[6];
	unsigned v[6];

	if (!hw || !*hw)
		return 0;
	if (sscanf(hw, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (unsigned char)v[i];
	return nl_put(b, IFLA_ADDRESS, mac, sizeof(mac)) ? 0 : -E2BIG;
}

static int put_veth_peer(struct nlbuf *b, const struct inst_nl_newlink *l)
{
	struct rtattr *data = nl_nest(b, IFLA_INFO_DATA), *peer;
	/* Down: the kernel opens the peer before pairing it (-ENOTCONN);
	 * inst_nl_link_up brings it up afterwards. */
	struct ifinfomsg ifi = { .ifi_family = AF_UNSPEC };
	int rc = 0;

	if (!data || !(peer = nl_put(b, VETH_INFO_PEER, &ifi, sizeof(ifi))))
		return -E2BIG;
	rc |= nl_put_str(b, IFLA_IFNAME, l->peer_name);
	if (l->peer_netns_fd >= 0)
		rc |= nl_put_u32(b, IFLA_NET_NS_FD, (uint32_t)l->peer_netns_fd);
	if (l->mtu)
		rc |= nl_put_u32(b, IFLA_MTU, l->mtu);
	rc |= put_hwaddr(b, l->hwaddr);
	nl_nest_end(b, peer);
	nl_nest_end(b, data);
	return rc ? -E2BIG : 0;
}

static int put_macvlan(struct nlbuf *b, const struct inst_nl_newlink *l)
{
	struct rtattr *data = nl_nest(b, IFLA_INFO_DATA);
	int rc;

	if (!data)
		return -E2BIG;
	rc = nl_put_u32(b, IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE);
	nl_nest_end(b, data);
	return rc;
}

int inst_nl_link_add(int fd, const struct inst_nl_newlink *l, cell_error *err)
{
	struct nlbuf b;
	struct ifinfomsg *ifi = nl_start(&b, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
					 sizeof(struct ifinfomsg));
	bool veth = strcmp(l->kind, "veth") == 0;
	struct rtattr *info;
	int rc = 0;

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	rc |= nl_put_str(&b, IFLA_IFNAME, l->name);
	if (l->mtu)
		rc |= nl_put_u32(&b, IFLA_MTU, l->mtu);
	if (l->master)
		rc |= nl_put_u32(&b, IFLA_MASTER, (uint32_t)l->master);
	if (l->link)
		rc |= nl_put_u32(&b, IFLA_LINK, (uint32_t)l->link);
	if (!veth && l->netns_fd >= 0)
		rc |= nl_put_u32(&b, IFLA_NET_NS_FD, (uint32_t)l->netns_fd);
	if (!veth)
		rc |= put_hwaddr(&b, l->hwaddr);
	if (rc || !(info = nl_nest(&b, IFLA_LINKINFO)) || nl_put_str(&b, IFLA_INFO_KIND, l->kind) < 0)
		return cell_err(err, 500, E2BIG, "create %s %s: message too long", l->kind, l->name);
	rc = veth ? put_veth_peer(&b, l) : put_macvlan(&b, l);
	nl_nest_end(&b, info);
	if (rc < 0)
		return cell_err(err, 500, -rc, "create %s %s: bad request", l->kind, l->name);
	rc = nl_request(fd, &b, NULL, NULL);
	if (rc < 0)
		return cell_err_sys(err, rc == -EEXIST ? 409 : 500, -rc, "create %s %s", l->kind,
				    veth ? l->peer_name : l->name);
	return 0;
}

int inst_nl_link_up(int fd, int ifindex)
{
	struct nlbuf b;
	struct ifinfomsg *ifi = nl_start(&b, RTM_NEWLINK, 0, sizeof(struct ifinfomsg));

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	return nl_request(fd, &b, NULL, NULL);
}

int inst_nl_link_del(int fd, int ifindex)
{
	struct nlbuf b;
	struct ifinfomsg *ifi = nl_start(&b, RTM_DELLINK, 0, sizeof(struct ifinfomsg));

	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = ifindex;
	return nl_request(fd, &b, NULL, NULL);
}

/* ---- dumps ------------------------------------------------------------------------ */

struct vec {
	void *items;
	size_t n, cap, size;
};

static void *vec_push(struct vec *v)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		void *p = realloc(v->items, cap * v->size);
		if (!p)
			return NULL;
		v->items = p;
		v->cap = cap;
	}
	return memset((char *)v->items + v->n++ * v->size, 0, v->size);
}

static void parse_linkinfo(struct rtattr *nest, struct inst_nl_link *l)
{
	int len = RTA_PAYLOAD(nest);

	for (struct rtattr *a = RTA_DATA(nest); RTA_OK(a, len); a = RTA_NEXT(a, len))
		if (a->rta_type == IFLA_INFO_KIND)
			snprintf(l->kind, sizeof(l->kind), "%.*s", (int)RTA_PAYLOAD(a),
				 (char *)RTA_DATA(a));
}

static void parse_stats(struct rtattr *a, struct inst_nl_link *l)
{
	struct rtnl_link_stats64 s;

	if (RTA_PAYLOAD(a) < sizeof(s))
		return;
	memcpy(&s, RTA_DATA(a), sizeof(s));
	l->rx_bytes = s.rx_bytes;
	l->tx_bytes = s.tx_bytes;
	l->rx_packets = s.rx_packets;
	l->tx_packets = s.tx_packets;
	l->rx_errors = s.rx_errors;
	l->tx_errors = s.tx_errors;
	l->rx_dropped = s.rx_dropped;
	l->tx_dropped = s.tx_dropped;
}

static void parse_link_attr(struct rtattr *a, struct inst_nl_link *l)
{
	size_t plen = RTA_PAYLOAD(a);

	switch (a->rta_type) {
	case IFLA_IFNAME:
		snprintf(l->name, sizeof(l->name), "%.*s", (int)plen, (char *)RTA_DATA(a));
		break;
	case IFLA_MTU:
		if (plen >= 4)
			memcpy(&l->mtu, RTA_DATA(a), 4);
		break;
	case IFLA_ADDRESS:
		l->addrlen = (int)(plen < sizeof(l->addr) ? plen : sizeof(l->addr));
		memcpy(l->addr, RTA_DATA(a), (size_t)l->addrlen);
		break;
	case IFLA_LINK:
		if (plen >= 4)
			memcpy(&l->link, RTA_DATA(a), 4);
		break;
	case IFLA_LINK_NETNSID:
		l->link_other_ns = true;
		break;
	case IFLA_STATS64:
		parse_stats(a, l);
		break;
	case IFLA_LINKINFO:
		parse_linkinfo(a, l);
		break;
	}
}

static int got_link(struct nlmsghdr *h, void *data)
{
	struct ifinfomsg *ifi = NLMSG_DATA(h);
	int len = (int)IFLA_PAYLOAD(h);
	struct inst_nl_link *l;

	if (h->nlmsg_type != RTM_NEWLINK)
		return 0;
	if (!(l = vec_push(data)))
		return -ENOMEM;
	l->index = ifi->ifi_index;
	l->flags = ifi->ifi_flags;
	for (struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len))
		parse_link_attr(a, l);
	return 0;
}

int inst_nl_links(int fd, struct inst_nl_link **out, size_t *n)
{
	struct vec v = { .size = sizeof(struct inst_nl_link) };
	struct nlbuf b;
	struct ifinfomsg *ifi = nl_start(&b, RTM_GETLINK, NLM_F_DUMP, sizeof(*ifi));
	int rc;

	ifi->ifi_family = AF_UNSPEC;
	rc = nl_dump(fd, &b, got_link, &v);
	if (rc < 0) {
		free(v.items);
		return rc;
	}
	*out = v.items;
	*n = v.n;
	return 0;
}

static int got_addr(struct nlmsghdr *h, void *data)
{
	struct ifaddrmsg *ifa = NLMSG_DATA(h);
	int len = (int)IFA_PAYLOAD(h);
	struct rtattr *local = NULL, *addr = NULL;
	struct inst_nl_addr *a;

	if (h->nlmsg_type != RTM_NEWADDR || (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
		return 0;
	for (struct rtattr *r = IFA_RTA(ifa); RTA_OK(r, len); r = RTA_NEXT(r, len)) {
		if (r->rta_type == IFA_LOCAL)
			local = r;
		else if (r->rta_type == IFA_ADDRESS)
			addr = r;
	}
	/* IFA_LOCAL is our end on point-to-point links; IFA_ADDRESS the peer. */
	if (local)
		addr = local;
	if (!addr)
		return 0;
	if (!(a = vec_push(data)))
		return -ENOMEM;
	a->index = (int)ifa->ifa_index;
	a->family = ifa->ifa_family;
	a->prefixlen = ifa->ifa_prefixlen;
	a->scope = ifa->ifa_scope;
	inet_ntop(ifa->ifa_family, RTA_DATA(addr), a->address, sizeof(a->address));
	return 0;
}

int inst_nl_addrs(int fd, struct inst_nl_addr **out, size_t *n)
{
	struct vec v = { .size = sizeof(struct inst_nl_addr) };
	struct nlbuf b;
	struct ifaddrmsg *ifa = nl_start(&b, RTM_GETADDR, NLM_F_DUMP, sizeof(*ifa));
	int rc;

	ifa->ifa_family = AF_UNSPEC;
	rc = nl_dump(fd, &b, got_addr, &v);
	if (rc < 0) {
		free(v.items);
		return rc;
	}
	*out = v.items;
	*n = v.n;
	return 0;
}
