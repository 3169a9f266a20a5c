"""Development tools on real parts: the demo, live benchmarks, load generators, the simulator as
a producer and the replay of a file through Kafka. Imports: core and every other adapter."""
