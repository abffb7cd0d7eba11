"""What the tests share, one concept a module; test modules import from here, never from each other.

credentials   which bearer token a client sends by default (a new admin's)
demo          the service as `make run` starts it, with a token of demo
faults        a TCP proxy that cuts the way to a service on cue
http          GraphQL over HTTP: in-process, or to a server process
identities    users in each role, and their API tokens
listening     channel-layer members, and `until_listening`: the subscriptions that hear changes
polling       wait until a condition holds, with a deadline (sync and async)
processes     start a server process on a free port, wait until it answers, stop it with SIGTERM
queries       the SQL statements a block runs, in every thread (a request served in-process)
services      server processes on the tests' own PostgreSQL and Redis
sockets       a listening socket as the kernel reports it (its backlog), as `ss -ltn` shows it
sources       a valid source's fields, and the state of the whole catalog
subscribers   sourceEvents subscribers on server processes, and `until_live`
websocket     the GraphQL-over-WebSocket client, in-process or over the network, both subprotocols
writers       the three ways a change reaches the catalog: GraphQL, the admin, plain ORM code
"""
