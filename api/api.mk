# The HTTP/JSON API (api/): objects, unit tests and fuzzers. The JSON configuration parsers it
# calls live in config/ (config/config.mk adds them to amber).
API_CORE_OBJS := api/http.o api/state.o api/routes.o api/handlers_config.o api/handlers_vm.o \
                 api/sinks.o api/handlers_snapshot.o \
                 api/handlers_timeout.o api/file_check.o
API_OBJS      := $(API_CORE_OBJS) api/server.o api/listen.o
API_CONFIG_OBJS := config/jfield.o config/sections.o config/json.o
VMM_OBJS      += $(API_OBJS)

$(eval $(call unit_test,test_http,api/http.o,))
$(eval $(call unit_test,test_api,$(API_OBJS) $(API_CONFIG_OBJS) vmm/loop.o vmm/log.o,-ljson-c))

API_FUZZ_SRCS := $(patsubst %.o,%.c,$(API_CORE_OBJS) $(API_CONFIG_OBJS)) vmm/log.c
$(eval $(call fuzz_target,fuzz_http,$(API_FUZZ_SRCS),-ljson-c))
$(eval $(call unit_test,test_api_seccomp,$(API_CORE_OBJS) $(API_CONFIG_OBJS) vmm/seccomp.o vmm/log.o,-ljson-c -lseccomp))
$(eval $(call unit_test,test_api_snapshot,$(API_OBJS) $(API_CONFIG_OBJS) vmm/loop.o vmm/log.o,-ljson-c))
$(eval $(call unit_test,test_api_fc,$(API_OBJS) $(API_CONFIG_OBJS) vmm/loop.o vmm/log.o,-ljson-c))
