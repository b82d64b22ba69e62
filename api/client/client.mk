# Host client: the agent client library (api/client/agent_client*.c) and build/amberctl.
AGENT_CLIENT_OBJS := api/client/agent_client.o api/client/agent_exec.o guest/agent/proto.o
AMBERCTL_OBJS := api/client/amberctl.o api/client/ctl_guest.o api/client/ctl_sandbox.o \
                 api/client/ctl_rundir.o api/client/http_client.o api/client/ctl_create.o \
                 api/client/ctl_procs.o \
                 $(AGENT_CLIENT_OBJS)
ALL_BINS += $(BUILD)/amberctl

$(BUILD)/amberctl: $(addprefix $(BUILD)/,$(AMBERCTL_OBJS))
	@[ "$(V)" = 0 ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ -ljson-c
