# Host client: the agent client library (ctl/agent_client*.c) and build/amberctl.
AGENT_CLIENT_OBJS := ctl/agent_client.o ctl/agent_exec.o proto/agent.o
AMBERCTL_OBJS := ctl/amberctl.o ctl/ctl_guest.o ctl/ctl_sandbox.o \
                 ctl/ctl_rundir.o ctl/http_client.o ctl/ctl_snapshot.o ctl/ctl_create.o \
                 ctl/ctl_procs.o ctl/snapshot_merge.o ctl/ctl_store.o ctl/ctl_restore.o \
                 ctl/ctl_hibernate.o ctl/ctl_template.o ctl/ctl_pty.o ctl/ctl_watch.o \
                 ctl/ctl_net.o ctl/netns.o ctl/netns_rules.o \
                 $(AGENT_CLIENT_OBJS)
ALL_BINS += $(BUILD)/amberctl

$(BUILD)/amberctl: $(addprefix $(BUILD)/,$(AMBERCTL_OBJS))
	@[ "$(V)" = 0 ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -ljson-c

$(eval $(call unit_test,test_netns_rules,ctl/netns_rules.o,))
