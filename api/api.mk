# The HTTP/JSON API (api/, except api/client/ which has its own fragment): objects, unit tests
# and fuzzers.
API_CORE_OBJS := api/http.o api/jfield.o api/config_sections.o api/config_json.o api/state.o \
                 api/routes.o api/handlers_config.o api/handlers_vm.o api/sinks.o \
                 api/handlers_timeout.o api/file_check.o
API_OBJS      := $(API_CORE_OBJS) api/server.o api/listen.o
VMM_OBJS      += $(API_OBJS)

$(eval $(call unit_test,test_http,api/http.o,))
$(eval $(call unit_test,test_config_json,$(API_CORE_OBJS) vmm/log.o,-ljson-c))
$(eval $(call unit_test,test_api,$(API_OBJS) vmm/loop.o vmm/log.o,-ljson-c))

API_FUZZ_SRCS := $(patsubst %.o,%.c,$(API_CORE_OBJS)) vmm/log.c
$(eval $(call fuzz_target,fuzz_http,$(API_FUZZ_SRCS),-ljson-c))
$(eval $(call fuzz_target,fuzz_config_json,$(API_FUZZ_SRCS),-ljson-c))
