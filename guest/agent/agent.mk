# amber-agent: the static guest binary (build/amber-agent), plus its codec's unit test and fuzzer.
AGENT_OBJS := guest/agent/main.o guest/agent/serve.o guest/agent/conn.o guest/agent/exec.o \
              guest/agent/init.o \
              guest/agent/user.o proto/agent.o guest/agent/vsock_send.o \
              guest/agent/bg.o guest/agent/bg_handoff.o \
              guest/agent/fileops.o guest/agent/reseed.o guest/agent/pty.o guest/agent/watch.o \
              guest/agent/logring.o guest/agent/logring_serve.o
ALL_BINS += $(BUILD)/amber-agent

$(BUILD)/amber-agent: $(addprefix $(BUILD)/,$(AGENT_OBJS))
	@[ "$(V)" = 0 ] && echo "  LD      $@" || true
	$(Q)$(CC) $(LDFLAGS) $(if $(SAN),,-static) -o $@ $^

$(eval $(call unit_test,test_agent_proto,proto/agent.o guest/agent/user.o,))
$(eval $(call unit_test,test_agent_logring,guest/agent/logring.o guest/agent/logring_serve.o,))
$(eval $(call fuzz_target,fuzz_agent_frame,proto/agent.c,))

# Host-side agent tests (no VM): the agent on a Unix socket driven by amberctl.
test-agent-host: $(BUILD)/amber-agent $(BUILD)/amberctl
	$(Q)bash tests/agent/test_agent_host.sh $(RESULTS)

.PHONY: test-agent-host
