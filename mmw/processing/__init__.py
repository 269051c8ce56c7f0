"""Plain numpy pre- and post-processing shared by the Triton python models, the clients and the tests."""
