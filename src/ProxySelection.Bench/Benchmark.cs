using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using ProxySelection.Lab;

namespace ProxySelection.Bench;

/// <summary>
/// One benchmark run: builds the two-path lab, starts every subject side by side in the same namespaces, and measures
/// throughput (iperf3, unlimited and at 1 Gbit/s), relay CPU per GB, short-connection rate and latency (wrk against
/// nginx), idle memory per held connection, and the two-path aggregation. Subjects are interleaved within each round
/// (order rotated per round) so a noisy neighbour hits all of them alike.
/// </summary>
public sealed class Benchmark(BenchOptions options, TimeProvider time)
{
    private const int IperfPort = 5201;
    private const int IperfMptcpPort = 5202;
    private const int HttpPort = 8080;
    private const int HttpMptcpPort = 8081;
    private const int IdlePort = 9000;

    // The engine intercepts only these, so no other subject's traffic crosses its queue.
    private const int EngineIperfPort = 5203;
    private const int EngineHttpPort = 8082;
    private const int EngineIdlePort = 9001;
    private const int EngineIperfMptcpPort = 5204;
    private const int EngineHttpMptcpPort = 8083;

    /// <summary>The TCP pass-through subject's own server port in the connection rounds. Sharing the holding subject's,
    /// a reused client port met the proxy's TIME_WAIT socket of a held connection with the same 4-tuple, and the proxy
    /// took the pass-through connection over (about 2,300 of 18,000 relayed: HandshakeSetPortReuseTests).</summary>
    private const int EnginePassHttpPort = 8084;
    private const string SmallFile = "/small";

    private static readonly string[] CounterPrefixes = ["MPTcpExt", "TcpExt"];

    private readonly TextWriter _log = options.Log;

    public async Task<BenchResults> RunAsync(IReadOnlyList<BenchSubject> subjects, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(subjects);
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("invalid BenchOptions: " + string.Join("; ", errors));
        }
        if (options.Only.Count > 0)
        {
            subjects = [.. subjects.Where(s => options.Only.Contains(s.Name))];
        }
        var results = new BenchResults(options, await DescribeMachineAsync().ConfigureAwait(false), time.GetUtcNow());
        foreach (var subject in subjects)
        {
            results.Subjects.Add(new SubjectResult(subject));
        }

        await using var lab = Lab.Lab.Create();
        var topology = await TwoPathTopology.BuildAsync(lab, cancellationToken).ConfigureAwait(false);
        var env = new BenchEnvironment(topology, options.RelayCommand) { RelayReadSize = options.RelayReadSize };
        Log($"lab {topology.Client.Name} / {topology.Proxy.Name} / {topology.Server.Name}; load {LoadAverage()}");
        foreach (var ns in new[] { topology.Client, topology.Proxy, topology.Server })
        {
            // wrk with Connection: close and 10,000 idle connections need ports: the default range (32768–60999) ran out
            // in a full run ("Cannot assign requested address"); TIME_WAIT sockets of earlier subjects may be reused. Above
            // 23000: the subjects listen on 5201–9001 and 20000–22999 in these namespaces.
            await ns.SysctlAsync(("net.ipv4.ip_local_port_range", "23000 65000"), ("net.ipv4.tcp_tw_reuse", "1")).ConfigureAwait(false);
        }
        if (options.SinglePath)
        {
            // No subflow endpoint: every MPTCP connection keeps its one initial subflow over path1.
            await topology.Client.IpAsync("mptcp", "endpoint", "flush").ConfigureAwait(false);
            results.Notes.Add("single path: the client's MPTCP subflow endpoints were removed (one subflow per connection)");
        }
        foreach (var (key, value) in options.ProxySysctls)
        {
            await topology.Proxy.SysctlAsync((key, value)).ConfigureAwait(false);
            results.Notes.Add($"proxy namespace sysctl {key}={value}");
        }
        foreach (var (key, value) in options.ClientSysctls)
        {
            await topology.Client.SysctlAsync((key, value)).ConfigureAwait(false);
            results.Notes.Add($"client namespace sysctl {key}={value}");
        }

        if (results.Subjects.Any(r => r.Subject is EngineSubject))
        {
            if (options.EngineCommand.Count == 0)
            {
                throw new ArgumentException("engine subjects need BenchOptions.EngineCommand");
            }
            var starting = System.Diagnostics.Stopwatch.StartNew();
            env.Engine = await EngineSubject.StartEngineAsync(topology.Proxy, options.EngineCommand,
                [EngineIperfPort, EngineHttpPort, EngineIdlePort, EngineIperfMptcpPort, EngineHttpMptcpPort, EnginePassHttpPort], options.EngineSettings)
                .ConfigureAwait(false);
            // Issue 13, warm start: exec to the running line (READY), then its memory once idle (no connection yet).
            results.EngineStartToReadyMs = starting.Elapsed.TotalMilliseconds;
            await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken).ConfigureAwait(false);
            results.EngineIdleRssKiB = ProcessStats.ResidentBytes(env.Engine.Pid) / 1024.0;
        }
        try
        {
            if (options.Phases.Contains("throughput"))
            {
                await ThroughputPhaseAsync(env, results, cancellationToken).ConfigureAwait(false);
            }
            if (options.Phases.Contains("connections"))
            {
                await ConnectionPhaseAsync(env, results, cancellationToken).ConfigureAwait(false);
            }
            if (options.Phases.Contains("idle"))
            {
                await IdlePhaseAsync(env, results, cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            if (env.Engine is not null)
            {
                await env.Engine.StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
                results.EngineOutputTail = Tail(env.Engine.Output, 40);
                results.EngineSynLatency = EngineSynLatency.Parse(env.Engine.Output);
                await env.Engine.DisposeAsync().ConfigureAwait(false);
            }
        }
        return results;
    }

    // ---- throughput, CPU per GB, aggregation, diagnostics ------------------------------------------------------

    private async Task ThroughputPhaseAsync(BenchEnvironment env, BenchResults results, CancellationToken cancellationToken)
    {
        var instances = await StartAllAsync(env, results, basePort: 20000, s => Upstream(env, s, IperfPort, IperfMptcpPort, EngineIperfPort, EngineIperfMptcpPort)).ConfigureAwait(false);
        try
        {
            // Servers after the subjects: a readiness probe through HAProxy or socat would otherwise reach iperf3 as a test.
            await using var iperf = env.Topology.Server.StartProcess("iperf3", ["-s", "--forceflush", "-p", $"{IperfPort}"]);
            await using var iperfMptcp = env.Topology.Server.StartProcess("mptcpize", ["run", "iperf3", "-s", "--forceflush", "-p", $"{IperfMptcpPort}"]);
            await using var iperfEngine = env.Topology.Server.StartProcess("iperf3", ["-s", "--forceflush", "-p", $"{EngineIperfPort}"]);
            await using var iperfEngineMptcp = env.Topology.Server.StartProcess("mptcpize", ["run", "iperf3", "-s", "--forceflush", "-p", $"{EngineIperfMptcpPort}"]);
            await iperf.WaitForOutputAsync("Server listening", TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            await iperfEngine.WaitForOutputAsync("Server listening", TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            await iperfMptcp.WaitForOutputAsync("Server listening", TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            await iperfEngineMptcp.WaitForOutputAsync("Server listening", TimeSpan.FromSeconds(10), cancellationToken).ConfigureAwait(false);
            await WarmEngineCacheAsync(env, instances, cancellationToken).ConfigureAwait(false);

            for (int round = 0; round < options.Rounds; round++)
            {
                foreach (var (result, instance) in Rotate(instances, round))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    await ThroughputRunAsync(env, result, instance, limited: false, evidence: round == 0).ConfigureAwait(false);
                }
            }

            if (options.RateLimited)
            {
                // On the proxy's uplink: every subject's data crosses it exactly once, whatever paths the client leg uses
                // (shaping the client's path1 would leave an MPTCP subflow over path2 unshaped).
                await env.Topology.Proxy.SetRateLimitAsync(TwoPathTopology.ProxyUp, "1gbit").ConfigureAwait(false);
                try
                {
                    for (int round = 0; round < options.Rounds; round++)
                    {
                        foreach (var (result, instance) in Rotate(instances, round))
                        {
                            cancellationToken.ThrowIfCancellationRequested();
                            await ThroughputRunAsync(env, result, instance, limited: true, evidence: false).ConfigureAwait(false);
                        }
                    }
                }
                finally
                {
                    await env.Topology.Proxy.ClearRateLimitAsync(TwoPathTopology.ProxyUp).ConfigureAwait(false);
                }
            }

            if (options.Aggregation)
            {
                await AggregationAsync(env, results, instances).ConfigureAwait(false);
            }

            if (options.Diagnose)
            {
                foreach (var (result, instance) in instances.Where(i => i.Instance.Process is not null))
                {
                    await DiagnoseRunAsync(env, result, instance).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            await StopAllAsync(instances).ConfigureAwait(false);
        }
    }

    private async Task ThroughputRunAsync(BenchEnvironment env, SubjectResult result, SubjectInstance instance, bool limited, bool evidence)
    {
        double load = LoadOne();
        double? cpuBefore = instance.CpuSeconds();
        var countersBefore = evidence ? await ReadCountersAsync(env.Topology.Proxy).ConfigureAwait(false) : null;
        var clientCountersBefore = evidence ? await ReadCountersAsync(env.Topology.Client).ConfigureAwait(false) : null;
        Task<string>? snapshot = evidence ? SnapshotSocketsAsync(env.Topology.Proxy, TimeSpan.FromSeconds(options.Seconds / 2.0)) : null;
        try
        {
            IperfRun r;
            try
            {
                r = await Iperf.RunAsync(env.Topology.Client, instance.Target, options.Seconds, result.Subject.ClientMptcp).ConfigureAwait(false);
            }
            catch (LabException e)
            {
                // One retry: a single failed run (iperf3 control connection lost, server busy) must not cost the figure.
                Log($"{result.Subject.Name,-18} iperf3 failed, retrying once: {e.Message}");
                cpuBefore = instance.CpuSeconds();
                r = await Iperf.RunAsync(env.Topology.Client, instance.Target, options.Seconds, result.Subject.ClientMptcp).ConfigureAwait(false);
            }
            double? cpu = instance.CpuSeconds() - cpuBefore;
            if (limited)
            {
                result.ThroughputBps1G.Add(new Sample(r.BitsPerSecond, load));
            }
            else
            {
                result.ThroughputBps.Add(new Sample(r.BitsPerSecond, load));
                result.StalledIntervals.Add(r.StalledIntervals);
                if (cpu is double seconds && r.Bytes > 0)
                {
                    result.CpuSecondsPerGb.Add(new Sample(seconds / (r.Bytes / 1e9), load));
                }
            }
            Log($"{result.Subject.Name,-18} {(limited ? "1G " : "")}throughput {r.BitsPerSecond / 1e9:F2} Gbit/s" +
                (cpu is not null && !limited ? $", relay CPU {cpu:F2} s for {r.Bytes / 1e9:F2} GB" : "") +
                $", {r.StalledIntervals} of {r.IntervalBitsPerSecond.Count} 0.1 s intervals under a tenth of that (load {load:F2})");
        }
        catch (LabException e)
        {
            result.Errors.Add($"iperf3{(limited ? " at 1 Gbit/s" : "")}: {e.Message}");
            Log($"{result.Subject.Name,-18} iperf3 failed: {e.Message}");
        }
        if (snapshot is not null)
        {
            result.SocketSnapshot = await snapshot.ConfigureAwait(false);
        }
        if (countersBefore is not null)
        {
            var after = await ReadCountersAsync(env.Topology.Proxy).ConfigureAwait(false);
            result.ProxyCounters = after
                .Where(kv => kv.Value != countersBefore.GetValueOrDefault(kv.Key))
                .ToDictionary(kv => kv.Key, kv => kv.Value - countersBefore.GetValueOrDefault(kv.Key));
            var clientAfter = await ReadCountersAsync(env.Topology.Client).ConfigureAwait(false);
            result.ClientCounters = clientAfter
                .Where(kv => kv.Value != clientCountersBefore!.GetValueOrDefault(kv.Key))
                .ToDictionary(kv => kv.Key, kv => kv.Value - clientCountersBefore!.GetValueOrDefault(kv.Key));
        }
    }

    private async Task AggregationAsync(BenchEnvironment env, BenchResults results, IReadOnlyList<(SubjectResult Result, SubjectInstance Instance)> instances)
    {
        var two = instances.FirstOrDefault(i => i.Result.Subject.Name == "relay-mptcp");
        var one = instances.FirstOrDefault(i => i.Result.Subject.Name == "relay-tcp");
        if (two.Instance is null || one.Instance is null)
        {
            results.Notes.Add("aggregation not measured: needs relay-mptcp and relay-tcp");
            return;
        }
        await env.Topology.Client.SetRateLimitAsync(TwoPathTopology.ClientPath1, "50mbit").ConfigureAwait(false);
        await env.Topology.Client.SetRateLimitAsync(TwoPathTopology.ClientPath2, "50mbit").ConfigureAwait(false);
        try
        {
            results.AggregationLoad = LoadAverage();
            var b = await LabNetwork.Iperf3Async(env.Topology.Client, one.Instance.Target.Address, one.Instance.Target.Port, options.Seconds).ConfigureAwait(false);
            var a = await LabNetwork.Iperf3Async(env.Topology.Client, two.Instance.Target.Address, two.Instance.Target.Port, options.Seconds, mptcp: true).ConfigureAwait(false);
            results.AggregationTwoPathsBps = a.BitsPerSecond;
            results.AggregationOnePathBps = b.BitsPerSecond;
            results.AggregationTwoPathsVsOne = a.BitsPerSecond / b.BitsPerSecond;
            Log($"aggregation: two 50 Mbit/s paths {a.BitsPerSecond / 1e6:F1} Mbit/s, one path {b.BitsPerSecond / 1e6:F1} Mbit/s (load {results.AggregationLoad})");
        }
        catch (LabException e)
        {
            results.Notes.Add($"aggregation failed: {e.Message}");
        }
        finally
        {
            await env.Topology.Client.ClearRateLimitAsync(TwoPathTopology.ClientPath1).ConfigureAwait(false);
            await env.Topology.Client.ClearRateLimitAsync(TwoPathTopology.ClientPath2).ConfigureAwait(false);
        }
    }

    /// <summary>strace -c -f over every process of the relay's group during one unlimited run (slowed by tracing).</summary>
    private async Task DiagnoseRunAsync(BenchEnvironment env, SubjectResult result, SubjectInstance instance)
    {
        var pids = ProcessStats.GroupPids(instance.Process!.Pid);
        var outFile = Path.Combine(Path.GetTempPath(), $"{env.Topology.Proxy.Name}-strace-{result.Subject.Name}.txt");
        List<string> args = ["-c", "-f", "-o", outFile];
        foreach (var pid in pids)
        {
            args.AddRange(["-p", pid.ToString(CultureInfo.InvariantCulture)]);
        }
        await using var strace = env.Topology.Proxy.StartProcess("strace", args);
        await Task.Delay(500).ConfigureAwait(false);
        try
        {
            var r = await Iperf.RunAsync(env.Topology.Client, instance.Target, options.Seconds, result.Subject.ClientMptcp).ConfigureAwait(false);
            result.DiagnoseThroughputBps = r.BitsPerSecond;
            await strace.StopAsync(TimeSpan.FromSeconds(5), signal: 2 /* SIGINT: strace prints its summary */).ConfigureAwait(false);
            result.SyscallSummary = File.Exists(outFile) ? await File.ReadAllTextAsync(outFile).ConfigureAwait(false) : strace.Output;
            Log($"{result.Subject.Name,-18} under strace: {r.BitsPerSecond / 1e9:F2} Gbit/s, {r.Bytes} bytes\n{result.SyscallSummary}");
        }
        catch (LabException e)
        {
            result.Errors.Add($"diagnose: {e.Message}");
        }
        finally
        {
            File.Delete(outFile);
        }
    }

    // ---- short connections ------------------------------------------------------------------------------------

    private async Task ConnectionPhaseAsync(BenchEnvironment env, BenchResults results, CancellationToken cancellationToken)
    {
        var serverAddress = env.ServerAddress;
        await using var nginx = await NginxServer.StartAsync(env.Topology.Server, HttpPort, serverAddress).ConfigureAwait(false);
        await using var nginxMptcp = await NginxServer.StartAsync(env.Topology.Server, HttpMptcpPort, serverAddress, mptcp: true).ConfigureAwait(false);
        await File.WriteAllTextAsync(nginx.WebRoot + SmallFile, "ok\n", cancellationToken).ConfigureAwait(false);
        await File.WriteAllTextAsync(nginxMptcp.WebRoot + SmallFile, "ok\n", cancellationToken).ConfigureAwait(false);
        await using var nginxEngine = await NginxServer.StartAsync(env.Topology.Server, EngineHttpPort, serverAddress).ConfigureAwait(false);
        await File.WriteAllTextAsync(nginxEngine.WebRoot + SmallFile, "ok\n", cancellationToken).ConfigureAwait(false);
        await using var nginxEngineMptcp = await NginxServer.StartAsync(env.Topology.Server, EngineHttpMptcpPort, serverAddress, mptcp: true).ConfigureAwait(false);
        await File.WriteAllTextAsync(nginxEngineMptcp.WebRoot + SmallFile, "ok\n", cancellationToken).ConfigureAwait(false);
        await using var nginxEnginePass = await NginxServer.StartAsync(env.Topology.Server, EnginePassHttpPort, serverAddress).ConfigureAwait(false);
        await File.WriteAllTextAsync(nginxEnginePass.WebRoot + SmallFile, "ok\n", cancellationToken).ConfigureAwait(false);
        var instances = await StartAllAsync(env, results, basePort: 21000, s => s is EngineSubject { Traffic: EngineTraffic.PassThroughTcp }
            ? new IPEndPoint(env.ServerAddress, EnginePassHttpPort)
            : Upstream(env, s, HttpPort, HttpMptcpPort, EngineHttpPort, EngineHttpMptcpPort))
            .ConfigureAwait(false);
        try
        {
            // One untimed second per subject first: the first round otherwise pays each relay's JIT and pool growth
            // (the stand-alone relay's first round cost 386 µs per connection against 219-234 warm).
            foreach (var (result, instance) in instances)
            {
                cancellationToken.ThrowIfCancellationRequested();
                try
                {
                    await Wrk.RunAsync(env.Topology.Client, instance.Target, SmallFile, 1, result.Subject.ClientMptcp).ConfigureAwait(false);
                }
                catch (LabException e)
                {
                    Log($"{result.Subject.Name,-18} warm-up failed (the timed rounds will say more): {e.Message}");
                }
            }
            for (int round = 0; round < options.Rounds; round++)
            {
                foreach (var (result, instance) in Rotate(instances, round))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    await SettleAsync(instances.Select(i => i.Instance), cancellationToken).ConfigureAwait(false);
                    double load = LoadOne();
                    double? cpuBefore = instance.CpuSeconds();
                    try
                    {
                        var w = await Wrk.RunAsync(env.Topology.Client, instance.Target, SmallFile, options.ConnectionSeconds, result.Subject.ClientMptcp).ConfigureAwait(false);
                        double? cpu = instance.CpuSeconds() - cpuBefore;
                        if (cpu is double seconds && w.Requests > 0)
                        {
                            result.CpuMicrosPerConnection.Add(new Sample(seconds * 1e6 / w.Requests, load));
                        }
                        result.ConnectionsPerSecond.Add(new Sample(w.RequestsPerSecond, load));
                        if (w.P50Ms is double p50)
                        {
                            result.LatencyP50Ms.Add(new Sample(p50, load));
                        }
                        if (w.P99Ms is double p99)
                        {
                            result.LatencyP99Ms.Add(new Sample(p99, load));
                        }
                        result.ConnectionErrors += w.SocketErrors + w.Non2xx;
                        Log($"{result.Subject.Name,-18} {w.RequestsPerSecond:F0} conn/s p50 {w.P50Ms:F2} ms p99 {w.P99Ms:F2} ms errors {w.SocketErrors + w.Non2xx}" +
                            (cpu is double c ? FormattableString.Invariant($", CPU {c * 1e6 / Math.Max(1, w.Requests):F1} µs/conn") : "") + $" (load {load:F2})");
                    }
                    catch (LabException e)
                    {
                        result.Errors.Add($"wrk: {e.Message}");
                        Log($"{result.Subject.Name,-18} wrk failed: {e.Message}");
                    }
                }
            }
            for (int round = 0; round < options.Rounds; round++)
            {
                foreach (var (result, instance) in Rotate(instances, round))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    await SettleAsync(instances.Select(i => i.Instance), cancellationToken).ConfigureAwait(false);
                    double load = LoadOne();
                    try
                    {
                        var c = await ConnectLatency.MeasureAsync(env.Topology.Client, instance.Target, result.Subject.ClientMptcp, options.Connects, time,
                            cancellationToken).ConfigureAwait(false);
                        result.ConnectP50Us.Add(new Sample(c.P50Us, load));
                        result.ConnectP99Us.Add(new Sample(c.P99Us, load));
                        result.ConnectionErrors += c.Failures;
                        Log($"{result.Subject.Name,-18} connect p50 {c.P50Us:F0} µs p99 {c.P99Us:F0} µs over {c.Connects} connects, {c.Failures} failed (load {load:F2})");
                    }
                    catch (LabException e)
                    {
                        result.Errors.Add($"connect latency: {e.Message}");
                        Log($"{result.Subject.Name,-18} connect latency failed: {e.Message}");
                    }
                }
            }
        }
        finally
        {
            await StopAllAsync(instances).ConfigureAwait(false);
        }
    }

    // ---- idle memory ----------------------------------------------------------------------------------------

    private async Task IdlePhaseAsync(BenchEnvironment env, BenchResults results, CancellationToken cancellationToken)
    {
        var measured = results.Subjects.Where(r => r.Subject.MeasuresIdleMemoryIn(env)).ToList();
        if (measured.Count == 0)
        {
            return;
        }
        await using var holder = await IdleConnections.StartAsync(env.Topology.Server, new IPEndPoint(env.ServerAddress, IdlePort)).ConfigureAwait(false);
        await using var engineHolder = await IdleConnections.StartAsync(env.Topology.Server, new IPEndPoint(env.ServerAddress, EngineIdlePort)).ConfigureAwait(false);
        // Subjects started from here on inherit the raised limit (HAProxy's maxconn is set above 10,000 for it).
        long limit = OpenFileLimit.TryRaise((2L * options.IdleConnections) + (4 * ProcessBaseline) + OpenFileLimit.OpenNow());
        int count = Math.Min(options.IdleConnections, IdleConnectionLimit());
        if (count < options.IdleConnections)
        {
            results.Notes.Add($"idle connections capped at {count} (of {options.IdleConnections}): RLIMIT_NOFILE {limit} (not raisable here: no CAP_SYS_RESOURCE) " +
                "allows two descriptors per connection in the relay and in the bench");
        }
        int port = 22000;
        foreach (var result in measured)
        {
            cancellationToken.ThrowIfCancellationRequested();
            SubjectInstance instance;
            try
            {
                instance = await result.Subject.StartAsync(env, port++, Upstream(env, result.Subject, IdlePort, IdlePort, EngineIdlePort, EngineIdlePort)).ConfigureAwait(false);
            }
            catch (LabException e)
            {
                result.Errors.Add($"start for idle memory: {e.Message}");
                continue;
            }
            await using (instance.ConfigureAwait(false))
            {
                double load = LoadOne();
                var (perConnection, held, error) = await (result.Subject is EngineSubject ? engineHolder : holder).MeasureAsync(env.Topology.Client,
                    instance.Target, result.Subject.ClientMptcp, instance.MeasuredGroup!.Value, count).ConfigureAwait(false);
                result.IdleConnectionsHeld = held;
                if (perConnection is double bytes)
                {
                    result.IdleBytesPerConnection = new Sample(bytes, load);
                    Log($"{result.Subject.Name,-18} idle: {bytes / 1024:F1} KiB RSS per connection over {held} connections (load {load:F2})");
                }
                else
                {
                    result.Errors.Add($"idle memory: {error}");
                    Log($"{result.Subject.Name,-18} idle memory failed: {error}");
                }
            }
        }
    }

    // ---- helpers --------------------------------------------------------------------------------------------

    /// <summary>
    /// One connect through each engine pass-through subject whose server speaks MPTCP, before measuring: the first SYN
    /// is a cache miss, and the engine's probe reaches the server as a connection of its own — iperf3 takes it for a
    /// client's control connection and fails the run that follows. After it, every SYN is a cache hit.
    /// </summary>
    private async Task WarmEngineCacheAsync(BenchEnvironment env, IReadOnlyList<(SubjectResult Result, SubjectInstance Instance)> instances,
        CancellationToken cancellationToken)
    {
        foreach (var (result, instance) in instances.Where(i => i.Result.Subject is EngineSubject { ServerMptcp: true }))
        {
            try
            {
                await ConnectLatency.MeasureAsync(env.Topology.Client, instance.Target, mptcp: true, count: 1, time, cancellationToken).ConfigureAwait(false);
            }
            catch (LabException e)
            {
                Log($"{result.Subject.Name,-18} cache warm-up connect failed: {e.Message}");
            }
        }
        // iperf3 reports the reset probe as a failed test and listens again.
        await Task.Delay(500, cancellationToken).ConfigureAwait(false);
    }

    private static IPEndPoint Upstream(BenchEnvironment env, BenchSubject subject, int port, int mptcpPort, int enginePort, int engineMptcpPort) =>
        new(env.ServerAddress, subject switch
        {
            DirectSubject { ServerMptcp: true } => mptcpPort,
            EngineSubject { ServerMptcp: true } => engineMptcpPort,
            EngineSubject => enginePort,
            _ => port,
        });

    private static string Tail(string text, int lines) =>
        string.Join('\n', text.Split('\n').TakeLast(lines));

    private async Task<List<(SubjectResult Result, SubjectInstance Instance)>> StartAllAsync(BenchEnvironment env, BenchResults results, int basePort,
        Func<BenchSubject, IPEndPoint> upstream)
    {
        var started = new List<(SubjectResult, SubjectInstance)>();
        int port = basePort;
        foreach (var result in results.Subjects)
        {
            try
            {
                started.Add((result, await result.Subject.StartAsync(env, port++, upstream(result.Subject)).ConfigureAwait(false)));
            }
            catch (LabException e)
            {
                result.Errors.Add($"start: {e.Message}");
                Log($"{result.Subject.Name,-18} did not start: {e.Message}");
            }
        }
        return started;
    }

    private static async Task StopAllAsync(IEnumerable<(SubjectResult Result, SubjectInstance Instance)> instances)
    {
        foreach (var (_, instance) in instances)
        {
            await instance.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Before each timed run: the next subject starts when every relay has finished the last one's closes (a process
    /// still busy with them would be charged to the next subject sharing it; the engine serves several subjects).
    /// Waits until the relays together use under 3 % of a core over 100 ms (at most 3 s, then goes on and says so): the
    /// closes, TIME_WAIT reaping and memory trims of one subject's run are not charged to the next.
    /// </summary>
    private async Task SettleAsync(IEnumerable<SubjectInstance> instances, CancellationToken cancellationToken)
    {
        var measured = instances.Where(i => i.CpuSeconds() is not null).DistinctBy(i => i.MeasuredGroup ?? -1).ToList();
        double Cpu() => measured.Sum(i => i.CpuSeconds() ?? 0);
        var window = TimeSpan.FromMilliseconds(100);
        double before = Cpu();
        for (int waited = 0; waited < 30; waited++)
        {
            await Task.Delay(window, cancellationToken).ConfigureAwait(false);
            double now = Cpu();
            if (now - before < 0.003)
            {
                return;
            }
            before = now;
        }
        Log("relays still busy 3 s after the last run; measuring anyway");
    }

    private static IEnumerable<T> Rotate<T>(IReadOnlyList<T> items, int by) =>
        items.Count == 0 ? items : items.Skip(by % items.Count).Concat(items.Take(by % items.Count));

    private static async Task<Dictionary<string, long>> ReadCountersAsync(NetNamespace ns)
    {
        var r = await ns.RunAsync("nstat", ["-asz"]).ConfigureAwait(false);
        var counters = new Dictionary<string, long>();
        foreach (var line in r.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length >= 2 && CounterPrefixes.Any(p => f[0].StartsWith(p, StringComparison.Ordinal)) &&
                long.TryParse(f[1], CultureInfo.InvariantCulture, out var v))
            {
                counters[f[0]] = v;
            }
        }
        return counters;
    }

    private static async Task<string> SnapshotSocketsAsync(NetNamespace ns, TimeSpan after)
    {
        await Task.Delay(after).ConfigureAwait(false);
        var r = await ns.RunAsync("ss", ["-tinM", "state", "established"]).ConfigureAwait(false);
        return r.StdOut;
    }

    /// <summary>The 1-, 5- and 15-minute load averages as /proc/loadavg prints them.</summary>
    public static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));

    private static double LoadOne() => double.Parse(File.ReadAllText("/proc/loadavg").Split(' ')[0], CultureInfo.InvariantCulture);

    private void Log(string line)
    {
        _log.WriteLine($"[bench {time.GetUtcNow():HH:mm:ss}] {line}");
        _log.Flush();
    }

    // Descriptors a subject's process holds besides its connections (a .NET relay ~60 measured, HAProxy fewer).
    private const int ProcessBaseline = 150;

    /// <summary>
    /// Idle connections one run can hold with RLIMIT_NOFILE as it is now: each costs two descriptors in the relay (client
    /// and upstream) and two in this process (both ends), besides what this process already holds.
    /// </summary>
    public static int IdleConnectionLimit()
    {
        long limit = OpenFileLimit.Current;
        long inRelay = (limit - ProcessBaseline) / 2;
        long inBench = (limit - OpenFileLimit.OpenNow() - ProcessBaseline) / 2;
        return (int)Math.Clamp(Math.Min(inRelay, inBench), 0, int.MaxValue);
    }

    private static async Task<MachineDescription> DescribeMachineAsync()
    {
        string model = "unknown";
        try
        {
            model = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? model;
        }
        catch (IOException)
        {
            // Left as unknown.
        }
        return new MachineDescription(
            model,
            Environment.ProcessorCount,
            (await File.ReadAllTextAsync("/proc/sys/kernel/osrelease").ConfigureAwait(false)).Trim(),
            RuntimeInformation.FrameworkDescription,
            LoadAverage(),
            await FirstLineAsync("haproxy", "-v").ConfigureAwait(false),
            await FirstLineAsync("socat", "-V", skip: 1).ConfigureAwait(false));
    }

    private static async Task<string> FirstLineAsync(string file, string arg, int skip = 0)
    {
        try
        {
            using var p = Process.Start(new ProcessStartInfo(file, [arg]) { RedirectStandardOutput = true, UseShellExecute = false })!;
            string output = await p.StandardOutput.ReadToEndAsync().ConfigureAwait(false);
            await p.WaitForExitAsync().ConfigureAwait(false);
            return output.Split('\n').Skip(skip).FirstOrDefault()?.Trim() ?? "";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return "not installed";
        }
    }
}
