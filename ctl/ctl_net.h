/* amberctl net and create --network: the command-line side of sandbox networking (ctl/netns.h). */
#ifndef AMBER_CTL_CTL_NET_H
#define AMBER_CTL_CTL_NET_H

#include "ctl/amberctl.h"
#include "ctl/netns.h"

#include <json-c/json.h>
#include <stdbool.h>

/* Add --allow-out (allow true) or --deny-out arg to p; prints why and returns -1 if it is bad. */
int ctl_net_opt(struct net_policy *p, bool allow, const char *arg);

/* info and p as the JSON record `net up` prints and config.json keeps under "network". */
struct json_object *ctl_net_json(const struct net_info *info, const struct net_policy *p);

/* True (with the refusal printed, naming what) when live sandbox id was created with --network:
 * hibernate, template create and fork do not recreate its namespace yet (docs/network.md). */
bool ctl_net_refuse(const char *id, const char *what);

/* Run the guest's network set-up script through the agent at vsock_path (hybrid vsock).
 * Returns 0, or -errno / -EIO (a non-zero exit) with the reason printed. */
int ctl_net_guest_setup(const char *vsock_path, const struct net_info *info);

#endif
