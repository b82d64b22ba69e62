/* Unit test: every flag amber's --help lists appears exactly once in README.md's flag table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define MAX_FLAGS 128
#define FLAG_LEN  48

struct flags {
    char name[MAX_FLAGS][FLAG_LEN];
    unsigned n;
};

static void flags_add(struct flags *f, const char *s, size_t len)
{
    if (f->n < MAX_FLAGS && len < FLAG_LEN) {
        memcpy(f->name[f->n], s, len);
        f->name[f->n][len] = '\0';
        f->n++;
    }
}

static unsigned flags_count(const struct flags *f, const char *name)
{
    unsigned c = 0;
    for (unsigned i = 0; i < f->n; i++)
        c += strcmp(f->name[i], name) == 0;
    return c;
}

/* Length of a flag ("-h", "--mem-mib") starting at s, or 0 if s does not start one. */
static size_t flag_len(const char *s, size_t max)
{
    size_t i = 0;
    while (i < max && i < 2 && s[i] == '-')
        i++;
    if (i == 0 || i >= max || !isalpha((unsigned char)s[i]))
        return 0;
    while (i < max && (isalnum((unsigned char)s[i]) || s[i] == '-'))
        i++;
    return i;
}

/* The flags --help documents: the leading "-x," / "--name" tokens of each indented line. */
/* The start of the line after the one at line (or its terminating NUL). */
static const char *next_line(const char *line)
{
    const char *nl = strchr(line, '\n');
    return nl ? nl + 1 : line + strlen(line);
}

static void help_flags(const char *help, struct flags *out)
{
    out->n = 0;
    for (const char *line = help; *line; line = next_line(line)) {
        const char *p = line;
        if (*p != ' ')
            continue;
        for (;;) {
            while (*p == ' ')
                p++;
            size_t len = flag_len(p, strcspn(p, " ,\n"));
            if (!len)
                break;
            flags_add(out, p, len);
            p += len;
            if (*p == ',')
                p++;
        }
    }
}

/*
 * The flags in the first cell of each row of the table under the "### Flags" heading: every
 * flag that starts a word there ("`--console stdio\|none\|FILE`", "`-h`, `--help`").
 */
static void readme_flags(const char *readme, struct flags *out)
{
    out->n = 0;
    const char *sec = strstr(readme, "\n### Flags\n");
    if (!sec)
        return;
    for (const char *line = next_line(sec + 1); *line && *line != '#'; line = next_line(line)) {
        if (line[0] != '|')
            continue;
        /* The first cell ends at the first '|' not escaped as "\|". */
        size_t end = 1;
        while (line[end] && line[end] != '\n' && !(line[end] == '|' && line[end - 1] != '\\'))
            end++;
        for (size_t i = 1; i < end; i++) {
            if (strchr(" `,(", line[i - 1]) == NULL)
                continue;
            size_t len = flag_len(line + i, end - i);
            if (len) {
                flags_add(out, line + i, len);
                i += len - 1;
            }
        }
    }
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap * 2 + 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n == 0)
            break;
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static char *usage_text(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    config_usage(f);
    fclose(f);
    return text;
}

/* make unit runs from the checkout's top; AMBER_README overrides the path. */
static char *readme_text(void)
{
    const char *path = getenv("AMBER_README") ? getenv("AMBER_README") : "README.md";
    char *t = read_text(path);
    if (!t)
        fail_msg("cannot read %s (run from the top of the checkout, or set AMBER_README)", path);
    return t;
}

static struct flags help, readme;

/* The help parser finds the flags it should, so the checks below cannot pass on nothing. */
static void test_help_parsed(void **state)
{
    char *text = usage_text();
    assert_non_null(text);
    help_flags(text, &help);
    free(text);
    assert_true(help.n >= 30);
    assert_int_equal(flags_count(&help, "--kernel"), 1);
    assert_int_equal(flags_count(&help, "-h"), 1);
    assert_int_equal(flags_count(&help, "--help"), 1);
    assert_int_equal(flags_count(&help, "--version"), 1);
    assert_int_equal(flags_count(&help, "--no-seccomp"), 1);
    assert_int_equal(flags_count(&help, "--api-sock"),
                     1); /* once, though --kernel's text names it */
}

/* The table parser counts a duplicate row twice and ignores flags outside first cells. */
static void test_table_parser(void **state)
{
    static const char sample[] =
        "# x\n\n### Flags\n\n| flag | meaning |\n|---|---|\n"
        "| `--a N` | like `--b` |\n| `--c x\\|y` | c |\n"
        "| `-h`, `--help` | h |\n| `--a` | again |\n\n## Next\n| `--d` | d |\n";
    struct flags f;
    readme_flags(sample, &f);
    assert_int_equal(f.n, 5);
    assert_int_equal(flags_count(&f, "--a"), 2);
    assert_int_equal(flags_count(&f, "--b"), 0);
    assert_int_equal(flags_count(&f, "--c"), 1);
    assert_int_equal(flags_count(&f, "-h"), 1);
    assert_int_equal(flags_count(&f, "--d"), 0);
}

static void test_each_help_flag_once_in_readme(void **state)
{
    char *text = readme_text();
    readme_flags(text, &readme);
    free(text);
    unsigned bad = 0;
    for (unsigned i = 0; i < help.n; i++) {
        unsigned c = flags_count(&readme, help.name[i]);
        if (c != 1) {
            print_error("README.md's flag table has %s %u times (want once)\n", help.name[i], c);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_readme_lists_no_other_flag(void **state)
{
    unsigned bad = 0;
    for (unsigned i = 0; i < readme.n; i++) {
        if (flags_count(&help, readme.name[i]) == 0) {
            print_error("README.md's flag table has %s, which --help does not list\n",
                        readme.name[i]);
            bad++;
        }
    }
    assert_true(readme.n > 0);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_help_parsed),
        cmocka_unit_test(test_table_parser),
        cmocka_unit_test(test_each_help_flag_once_in_readme),
        cmocka_unit_test(test_readme_lists_no_other_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
