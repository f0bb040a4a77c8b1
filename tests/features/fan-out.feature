Feature: The for.concurrency fan-out extension
  With a limit above 1, iterations run concurrently and the output is in index order.

  Scenario: Outputs come back in index order
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: fan-out, version: '1.0.0' }
    do:
      - fan:
          for:
            each: n
            in: .numbers
            concurrency: ${ .parallelism }
          do:
            - nap:
                wait: '${ "PT0.0\(9 - $n)S" }'
            - square:
                set: '${ $n * $n }'
    """
    And given the workflow input is:
    """yaml
    numbers: [ 1, 2, 3, 4, 5, 6 ]
    parallelism: 6
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    [ 1, 4, 9, 16, 25, 36 ]
    """

  Scenario: A fault in one iteration faults the task
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: fan-out-fault, version: '1.0.0' }
    do:
      - fan:
          for: { in: '[range(6)]', concurrency: 3 }
          do:
            - check:
                if: $item == 4
                raise:
                  error:
                    type: https://skein.dev/errors/bad-item
                    status: 422
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://skein.dev/errors/bad-item
    status: 422
    instance: /do/0/fan/do/0/check
    """
