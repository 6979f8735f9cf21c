/* The chat format, on exact strings. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "../runtime/runtime.h"

Test(chat, release_example_is_reproduced_exactly) {
    chat_message m[] = {{CHAT_USER, "What is your name?"}};
    char *text = chat_format(m, 1, true);
    cr_expect_str_eq(text, "Human: What is your name?<|separator|>\n\nAssistant:");
    free(text);
}

Test(chat, system_and_user_are_stripped_assistant_is_kept_verbatim) {
    chat_message m[] = {{CHAT_SYSTEM, "  Be brief.\n"}, {CHAT_USER, "\tHi "}, {CHAT_ASSISTANT, " Hello! "},
                        {CHAT_USER, "Bye"}};
    char *text = chat_format(m, 4, true);
    cr_expect_str_eq(text, "System: Be brief.<|separator|>\n\nHuman: Hi<|separator|>\n\n"
                           "Assistant:  Hello! <|separator|>\n\nHuman: Bye<|separator|>\n\nAssistant:");
    free(text);
}

Test(chat, without_generation_prompt_ends_after_the_separator) {
    chat_message m[] = {{CHAT_USER, ""}};
    char *text = chat_format(m, 1, false);
    cr_expect_str_eq(text, "Human: <|separator|>\n\n");
    free(text);
    text = chat_format(NULL, 0, true);
    cr_expect_str_eq(text, "Assistant:");
    free(text);
}
