/* Grok-2's chat format (grok2-model.md section 4), as one function the tests pin down. */
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/* Python's str.strip() on ASCII whitespace */
static void stripped(const char *s, const char **start, size_t *len) {
    size_t n = strlen(s);
    while (n && is_space(*s)) s++, n--;
    while (n && is_space(s[n - 1])) n--;
    *start = s;
    *len = n;
}

char *chat_format(const chat_message *messages, size_t n, bool add_generation_prompt) {
    static const char *const prefix[] = {"System: ", "Human: ", "Assistant: "};
    static const char separator[] = "<|separator|>\n\n", generation_prompt[] = "Assistant:";
    size_t total = sizeof generation_prompt;
    for (size_t i = 0; i < n; i++) total += strlen(prefix[messages[i].role]) + strlen(messages[i].content) + sizeof separator;
    char *out = malloc(total), *p = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *text = messages[i].content;
        size_t len = strlen(text);
        if (messages[i].role != CHAT_ASSISTANT) stripped(text, &text, &len);
        p = stpcpy(p, prefix[messages[i].role]);
        memcpy(p, text, len);
        p = stpcpy(p + len, separator);
    }
    if (add_generation_prompt) p = stpcpy(p, generation_prompt);
    *p = 0;
    return out;
}
