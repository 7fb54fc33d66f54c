# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_rollout_global_optspecs
    string join \n color= h/help V/version
end

function __fish_rollout_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_rollout_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_rollout_using_subcommand
    set -l cmd (__fish_rollout_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c rollout -n "__fish_rollout_needs_command" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_needs_command" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "run" -d 'Run a rollout: move traffic stage by stage, gated by the plan\'s metrics'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "validate" -d 'Check plan files without touching anything; exit 2 if any is invalid'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "backtest" -d 'Replay a plan over a past window of Prometheus history; touches nothing (exit 0, 3 or 4 as `run` would have)'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "plan" -d 'Show a plan\'s stages as a table, with minimum and worst-case durations'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "status" -d 'Show where a rollout stands: its status, stage, weight and latest metrics'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "resume" -d 'Continue a paused or interrupted rollout from its last confirmed stage'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "rollback" -d 'Return traffic to the stable version now, from any state (exit 0 done, 5 failed)'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "list" -d 'List every rollout in a state store: status, stage, weight, holder, last change'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "approve" -d 'Answer a rollout that is waiting for approval, from another shell or CI job'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "schema" -d 'Print a JSON Schema of the plan format, for editors (Taplo reads it from a `#:schema` comment at the top of a plan)'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "man" -d 'Write the man pages, one per command, into a directory'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "completions" -d 'Print a shell completion script'
complete -c rollout -n "__fish_rollout_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c rollout -n "__fish_rollout_using_subcommand run" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand run" -l state -d 'Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand run" -l state-dir -d 'A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand run" -l report -d 'Write the full evidence (every measurement and decision) as JSON to this file' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand run" -l ci -d 'Speak the CI\'s language [default: github when GITHUB_ACTIONS=true, gitlab when GITLAB_CI=true, else none]' -r -f -a "github\t'GitHub Actions: annotations and a step summary'
gitlab\t'GitLab CI: a collapsible log section per stage'
none\t'Plain output only'"
complete -c rollout -n "__fish_rollout_using_subcommand run" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand run" -l dry-run -d 'Walk the whole plan and print what would be done, touching nothing'
complete -c rollout -n "__fish_rollout_using_subcommand run" -l wait-for-window -d 'Outside the plan\'s change window, wait for it to open instead of exiting 2'
complete -c rollout -n "__fish_rollout_using_subcommand run" -s y -l yes -d 'Approve every approval gate up front'
complete -c rollout -n "__fish_rollout_using_subcommand run" -s q -l quiet -d 'Print only warnings, the final decision and errors'
complete -c rollout -n "__fish_rollout_using_subcommand run" -s v -l verbose -d 'Also print every measurement and backend command'
complete -c rollout -n "__fish_rollout_using_subcommand run" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand run" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand validate" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand validate" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand validate" -l live -d 'Also query every metric and baseline once, now, and report what each answered, the verdict it would get and every problem (exit 2 unless every metric answered a value)'
complete -c rollout -n "__fish_rollout_using_subcommand validate" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand validate" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -l start -d 'Where the replay starts: RFC 3339 (2026-05-01T09:00:00Z), or relative to now (-6h)' -r
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -l end -d 'Where the history ends: RFC 3339, relative to now (-1h), or `now`' -r
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -l report -d 'Write the full evidence (every measurement and decision) as JSON to this file' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -l deny-approvals -d 'Refuse every approval gate instead of counting it as given'
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -s q -l quiet -d 'Print only warnings, the final decision and errors'
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -s v -l verbose -d 'Also print every measurement and what hooks would have run'
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand backtest" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand plan" -l format -d 'table: the stages for a terminal; markdown: a runbook for a change ticket; json: the validated plan with every default applied' -r -f -a "table\t''
markdown\t''
json\t''"
complete -c rollout -n "__fish_rollout_using_subcommand plan" -l state -d 'Where the rollout\'s state will live, for the runbook\'s commands (a folder or URL, as --state of run) [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand plan" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand plan" -s h -l help -d 'Print help'
complete -c rollout -n "__fish_rollout_using_subcommand plan" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand status" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand status" -l state -d 'Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand status" -l state-dir -d 'A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand status" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand status" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l state -d 'Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l state-dir -d 'A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l report -d 'Write the full evidence (every measurement and decision) as JSON to this file' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l ci -d 'Speak the CI\'s language [default: github when GITHUB_ACTIONS=true, gitlab when GITLAB_CI=true, else none]' -r -f -a "github\t'GitHub Actions: annotations and a step summary'
gitlab\t'GitLab CI: a collapsible log section per stage'
none\t'Plain output only'"
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand resume" -l force -d 'Resume even though the plan file changed since the rollout started, or its lease on a shared store has not run out yet'
complete -c rollout -n "__fish_rollout_using_subcommand resume" -s y -l yes -d 'Approve every approval gate up front'
complete -c rollout -n "__fish_rollout_using_subcommand resume" -s q -l quiet -d 'Print only warnings, the final decision and errors'
complete -c rollout -n "__fish_rollout_using_subcommand resume" -s v -l verbose -d 'Also print every measurement and backend command'
complete -c rollout -n "__fish_rollout_using_subcommand resume" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand resume" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l task-definition -d 'ECS service mode without a journal: the task definition (family:revision or ARN) to return the service to' -r
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l state -d 'Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l state-dir -d 'A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l report -d 'Write the full evidence (every measurement and decision) as JSON to this file' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l ci -d 'Speak the CI\'s language [default: github when GITHUB_ACTIONS=true, gitlab when GITLAB_CI=true, else none]' -r -f -a "github\t'GitHub Actions: annotations and a step summary'
gitlab\t'GitLab CI: a collapsible log section per stage'
none\t'Plain output only'"
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -l force -d 'Take the rollout over from a holder whose lease on a shared store has not run out yet'
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -s y -l yes -d 'Approve every approval gate up front'
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -s q -l quiet -d 'Print only warnings, the final decision and errors'
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -s v -l verbose -d 'Also print every measurement and backend command'
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand rollback" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand list" -l output -d 'Output format' -r -f -a "human\t'Text for people: live progress in a terminal, timestamped lines otherwise'
json\t'One JSON object per line on stdout'"
complete -c rollout -n "__fish_rollout_using_subcommand list" -l state -d 'Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand list" -l state-dir -d 'A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand list" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c rollout -n "__fish_rollout_using_subcommand list" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand approve" -l by -d 'Who answers, for the log [default: $USER]' -r
complete -c rollout -n "__fish_rollout_using_subcommand approve" -l state -d 'Where rollout state lives: a folder, file://PATH, s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or az://CONTAINER/PREFIX [env: ROLLOUT_STATE] [default: the plan\'s [state] url, else .rollout]' -r
complete -c rollout -n "__fish_rollout_using_subcommand approve" -l state-dir -d 'A local state folder, as --state DIR [env: ROLLOUT_STATE_DIR]' -r -F
complete -c rollout -n "__fish_rollout_using_subcommand approve" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand approve" -l reject -d 'Refuse instead: the rollout rolls back'
complete -c rollout -n "__fish_rollout_using_subcommand approve" -s h -l help -d 'Print help'
complete -c rollout -n "__fish_rollout_using_subcommand approve" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand schema" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand schema" -s h -l help -d 'Print help'
complete -c rollout -n "__fish_rollout_using_subcommand schema" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand man" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand man" -s h -l help -d 'Print help'
complete -c rollout -n "__fish_rollout_using_subcommand man" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand completions" -l color -d 'When to color output [default: auto, which honors NO_COLOR]' -r -f -a "auto\t''
always\t''
never\t''"
complete -c rollout -n "__fish_rollout_using_subcommand completions" -s h -l help -d 'Print help'
complete -c rollout -n "__fish_rollout_using_subcommand completions" -s V -l version -d 'Print version'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "run" -d 'Run a rollout: move traffic stage by stage, gated by the plan\'s metrics'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "validate" -d 'Check plan files without touching anything; exit 2 if any is invalid'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "backtest" -d 'Replay a plan over a past window of Prometheus history; touches nothing (exit 0, 3 or 4 as `run` would have)'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "plan" -d 'Show a plan\'s stages as a table, with minimum and worst-case durations'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "status" -d 'Show where a rollout stands: its status, stage, weight and latest metrics'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "resume" -d 'Continue a paused or interrupted rollout from its last confirmed stage'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "rollback" -d 'Return traffic to the stable version now, from any state (exit 0 done, 5 failed)'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "list" -d 'List every rollout in a state store: status, stage, weight, holder, last change'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "approve" -d 'Answer a rollout that is waiting for approval, from another shell or CI job'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "schema" -d 'Print a JSON Schema of the plan format, for editors (Taplo reads it from a `#:schema` comment at the top of a plan)'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "man" -d 'Write the man pages, one per command, into a directory'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "completions" -d 'Print a shell completion script'
complete -c rollout -n "__fish_rollout_using_subcommand help; and not __fish_seen_subcommand_from run validate backtest plan status resume rollback list approve schema man completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
