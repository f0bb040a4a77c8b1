Feature: Retries and errors
  Retry policies rerun the try block; referenced errors and schemas fault with the DSL's errors.

  Scenario: Retries are spent, then the catch block handles the error
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: retry-then-handle, version: '1.0.0' }
    use:
      retries:
        quick:
          delay: { milliseconds: 10 }
          backoff: { linear: {} }
          limit: { attempt: { count: 2 } }
    do:
      - find:
          try:
            - get:
                call: http
                with:
                  method: get
                  endpoint: https://petstore.swagger.io/v2/pet/getPetByName/{name}
          catch:
            errors:
              with: { status: 404 }
            retry: quick
            do:
              - fallback:
                  set:
                    found: false
                    status: ${ $error.status }
    """
    And given the workflow input is:
    """yaml
    name: Nobody
    """
    When the workflow is executed
    Then the workflow should complete with output:
    """yaml
    found: false
    status: 404
    """
    And find should run first
    And get should run before fallback
    And fallback should run last

  Scenario: Retries are spent and nothing handles the error
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: retry-then-fault, version: '1.0.0' }
    do:
      - find:
          try:
            - get:
                call: http
                with:
                  method: get
                  endpoint: https://petstore.swagger.io/v2/pet/getPetByName/Nobody
          catch:
            retry:
              limit: { attempt: { count: 1 } }
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/communication
    status: 404
    instance: /do/0/find/try/0/get
    """

  Scenario: A referenced error is raised with its expressions evaluated
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: raise-reference, version: '1.0.0' }
    use:
      errors:
        tooBig:
          type: https://skein.dev/errors/too-big
          status: 413
          title: '${ "Too big: \(.size)" }'
    do:
      - check:
          if: .size > 10
          raise:
            error: tooBig
    """
    And given the workflow input is:
    """yaml
    size: 11
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://skein.dev/errors/too-big
    status: 413
    title: 'Too big: 11'
    instance: /do/0/check
    """

  Scenario: Input that does not match the workflow's schema is refused
    Given a workflow with definition:
    """yaml
    document: { dsl: '1.0.3', namespace: skein, name: input-schema, version: '1.0.0' }
    input:
      schema:
        format: json
        document:
          type: object
          required: [ orderId ]
    do:
      - use:
          set: { ok: true }
    """
    And given the workflow input is:
    """yaml
    order: 1
    """
    When the workflow is executed
    Then the workflow should fault with error:
    """yaml
    type: https://serverlessworkflow.io/spec/1.0.0/errors/validation
    status: 400
    """
