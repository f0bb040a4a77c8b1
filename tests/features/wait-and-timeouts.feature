Feature: Durable waits and timeouts
  Waits are journaled timers; timeouts fault tasks and workflows with the DSL's timeout error.

  Scenario: A wait delays the flow and keeps the data
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: wait, version: '1.0.0' }
    do:
      - pause:
          wait: { milliseconds: 150 }
      - after:
          set: '${ . + { waited: true } }'
    """
    And given the workflow input is:
    """yaml
    n: 1
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    n: 1
    waited: true
    """

  Scenario: A task that outlives its timeout faults
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: task-timeout, version: '1.0.0' }
    do:
      - slow:
          wait: PT5S
          timeout:
            after: { milliseconds: 100 }
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
    status: 408
    instance: /do/0/slow
    """

  Scenario: The workflow timeout bounds the whole execution
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: workflow-timeout, version: '1.0.0' }
    timeout:
      after: { milliseconds: 100 }
    do:
      - slow:
          wait: PT5S
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/timeout
    status: 408
    """
