"""The exit statuses of `llmstacks` (README: "The command line" lists them; a test keeps the two equal).

Scripts and CI tell the outcomes apart by these numbers, so a number never changes meaning.
"""

SUCCESS = 0
CHECK_FAILED = 1  # a check ran and found problems: the policy gate (check, preview), verify-model
USER_ERROR = 2  # bad input the user can fix (stacks.errors.UserError), usage mistakes included
TOOL_ERROR = 3  # a program or service we depend on is missing or failed (stacks.errors.ToolError): checkov, git, AWS
INTERNAL_ERROR = 4  # anything else: a bug in llmstacks, or a failure nothing above names; its traceback is printed
INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, what a shell reports for a program the signal ended
BROKEN_PIPE = 141  # the reader of standard output went away (`| head`): 128 + SIGPIPE, as for `yes | head`
