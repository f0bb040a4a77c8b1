Feature: Run shell commands
  `run.shell` runs a local process with arguments, environment and stdin.

  Scenario: Standard output is the task's output
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: shell, version: '1.0.0' }
    do:
      - greet:
          run:
            shell:
              command: 'printf "%s, %s" "$GREETING" "$1"; cat'
              arguments: [ '${ .name }' ]
              environment:
                GREETING: Hello
              stdin: ' (from stdin)'
    """
    And given the workflow input is:
    """yaml
    name: Ada
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    Hello, Ada (from stdin)
    """

  Scenario: A non-zero exit faults with a runtime error
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: shell-fails, version: '1.0.0' }
    do:
      - fail:
          run:
            shell:
              command: 'echo broken >&2; exit 7'
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/runtime
    status: 500
    title: The process exited with code 7
    instance: /do/0/fail
    """

  Scenario: return all keeps the exit code as data
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: shell-all, version: '1.0.0' }
    do:
      - check:
          run:
            shell:
              command: 'echo out; echo err >&2; exit 3'
            return: all
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    code: 3
    stdout: "out\n"
    stderr: "err\n"
    """

  Scenario: A Python script gets its arguments, environment and stdin
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: script, version: '1.0.0' }
    do:
      - compute:
          run:
            script:
              language: python
              code: |
                import os, sys
                print(int(sys.argv[1]) * int(os.environ["FACTOR"]) + len(sys.stdin.read()), end="")
              arguments: [ '${ .n | tostring }' ]
              environment:
                FACTOR: '3'
              stdin: abcd
          output:
            as: tonumber
    """
    And given the workflow input is:
    """yaml
    n: 5
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    19
    """
