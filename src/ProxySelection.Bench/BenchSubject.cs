using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Lab;
using ProxySelection.Relay;

namespace ProxySelection.Bench;

/// <summary>
/// One thing traffic goes through between client and server: the direct routed path, our relay, HAProxy, socat —
/// and, with the engine, our proxy in pass-through or holding. Every subject is started in the same namespaces; the
/// client dials <see cref="SubjectInstance.Target"/>.
/// </summary>
public abstract class BenchSubject
{
    /// <summary>Short name used in the table and JSON keys, e.g. <c>haproxy-mptcp</c>.</summary>
    public abstract string Name { get; }

    /// <summary>One line for the results file.</summary>
    public abstract string Description { get; }

    /// <summary>The client speaks MPTCP (runs under <c>mptcpize run</c> or opens IPPROTO_MPTCP sockets).</summary>
    public virtual bool ClientMptcp => false;

    /// <summary>A relay process whose CPU and memory the bench reads; false for the kernel's own forwarding.</summary>
    public virtual bool HasProcess => true;

    /// <summary>Holds idle connections in one process whose RSS means something (socat forks one per connection).</summary>
    public virtual bool MeasuresIdleMemory => HasProcess;

    /// <summary>Idle memory needs a process of its own (the bench holds both ends' sockets itself).</summary>
    public virtual bool MeasuresIdleMemoryIn(BenchEnvironment environment) => MeasuresIdleMemory;

    /// <summary>Starts the subject listening on <paramref name="listenPort"/> of the proxy (if it listens at all) and
    /// forwarding to <paramref name="upstream"/>; returns once a client can connect.</summary>
    public abstract Task<SubjectInstance> StartAsync(BenchEnvironment environment, int listenPort, IPEndPoint upstream);

    public override string ToString() => Name;

    /// <summary>The subjects a run compares, in table order; the engine's (<c>proxysel run</c>) when asked.</summary>
    public static IReadOnlyList<BenchSubject> Standard(bool includeEngine = false, bool includeDirectMptcp = true)
    {
        List<BenchSubject> subjects = [new DirectSubject(mptcp: false)];
        if (includeEngine)
        {
            subjects.Add(new EngineSubject(EngineTraffic.PassThroughTcp));
            subjects.Add(new EngineSubject(EngineTraffic.PassThroughMptcp));
            subjects.Add(new EngineSubject(EngineTraffic.Holding));
        }
        if (includeDirectMptcp)
        {
            subjects.Add(new DirectSubject(mptcp: true));
        }
        subjects.AddRange(
        [
            new RelaySubject(TransportProtocol.Tcp),
            new RelaySubject(TransportProtocol.Mptcp),
            new RelaySubject(TransportProtocol.Tcp, splice: true),
            new RelaySubject(TransportProtocol.Mptcp, splice: true),
            new HaproxySubject(mptcpize: false),
            new HaproxySubject(mptcpize: true),
            new SocatSubject(mptcpize: false),
            new SocatSubject(mptcpize: true),
        ]);
        return subjects;
    }
}

/// <summary>A started subject: where the client connects, and the relay process when there is one.</summary>
public sealed class SubjectInstance(IPEndPoint target, LabProcess? process, Func<ValueTask>? cleanup = null, Func<double>? inProcessCpuSeconds = null,
    int? sharedGroup = null)
    : IAsyncDisposable
{
    public IPEndPoint Target { get; } = target;

    /// <summary>The relay process (its group is measured); null for the direct path and the in-process relay.</summary>
    public LabProcess? Process { get; } = process;

    /// <summary>The relay's CPU seconds so far (its process group, or this whole process for the in-process relay);
    /// null when nothing relays in user space.</summary>
    public double? CpuSeconds() =>
        MeasuredGroup is int group ? ProcessStats.CpuSeconds(group) : inProcessCpuSeconds?.Invoke();

    /// <summary>The process group whose CPU and RSS are this subject's: its own process, or a shared one (the engine).</summary>
    public int? MeasuredGroup => Process?.Pid ?? sharedGroup;

    public async ValueTask DisposeAsync()
    {
        if (Process is not null)
        {
            await Process.DisposeAsync().ConfigureAwait(false);
        }
        if (cleanup is not null)
        {
            await cleanup().ConfigureAwait(false);
        }
    }
}

/// <summary>The kernel's own forwarding: the client dials the server, the proxy namespace only routes.</summary>
public sealed class DirectSubject(bool mptcp) : BenchSubject
{
    public override string Name => mptcp ? "direct-mptcp" : "direct";

    public override string Description => mptcp
        ? "routed path, MPTCP end to end (client and server under mptcpize; the second path joins)"
        : "routed path, TCP end to end (kernel forwarding in the proxy namespace)";

    public override bool ClientMptcp => mptcp;

    public override bool HasProcess => false;

    /// <summary>Servers of this subject run under mptcpize too.</summary>
    public bool ServerMptcp => mptcp;

    public override Task<SubjectInstance> StartAsync(BenchEnvironment environment, int listenPort, IPEndPoint upstream) =>
        Task.FromResult(new SubjectInstance(upstream, null));
}

/// <summary>
/// Our relay (ProxySelection.Relay) holding: a plain listener on the proxy's path1 address that the client dials directly
/// (no TPROXY), TCP upstream. Normally its own process (<c>proxysel-lab bench relay</c> in the proxy namespace), measured from
/// /proc like the others; with no <see cref="BenchEnvironment.RelayCommand"/> it runs inside the bench process with its
/// sockets created in the proxy namespace, CPU is then the bench process's own delta (the bench itself idles while
/// iperf3 runs) and idle memory is not measured.
/// </summary>
public sealed class RelaySubject(TransportProtocol clientProtocol, bool splice = false) : BenchSubject
{
    public override string Name => (clientProtocol == TransportProtocol.Mptcp ? "relay-mptcp" : "relay-tcp") + (splice ? "-splice" : "");

    public override string Description =>
        $"our relay holding, {(clientProtocol == TransportProtocol.Mptcp ? "MPTCP" : "TCP")} client leg → TCP server leg (plain listener, client dials it)" +
        (splice ? ", splice(2) instead of user-space copies" : "");

    public override bool ClientMptcp => clientProtocol == TransportProtocol.Mptcp;

    public override bool MeasuresIdleMemoryIn(BenchEnvironment environment) => environment?.RelayCommand.Count > 0;

    public override async Task<SubjectInstance> StartAsync(BenchEnvironment environment, int listenPort, IPEndPoint upstream)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(upstream);
        var listen = new IPEndPoint(environment.ProxyAddress, listenPort);
        if (environment.RelayCommand.Count == 0)
        {
            return await StartInProcessAsync(environment, listen, upstream).ConfigureAwait(false);
        }
        List<string> args =
        [
            .. environment.RelayCommand.Skip(1), "bench", "relay", "--listen", listen.ToString(), "--upstream", upstream.ToString(),
            "--client-protocol", clientProtocol == TransportProtocol.Mptcp ? "mptcp" : "tcp",
            .. (splice ? (string[])["--splice"] : []),
            .. (environment.RelayReadSize is int size ? (string[])["--read-size", size.ToString(CultureInfo.InvariantCulture)] : []),
        ];
        var process = environment.Topology.Proxy.StartProcess(environment.RelayCommand[0], args);
        try
        {
            await process.WaitForOutputAsync(RelayProcess.ReadyLine, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is LabException or TimeoutException)
        {
            var output = process.Output;
            await process.DisposeAsync().ConfigureAwait(false);
            throw new LabException($"relay process did not start: {output}", e);
        }
        return new SubjectInstance(listen, process);
    }

    private async Task<SubjectInstance> StartInProcessAsync(BenchEnvironment environment, IPEndPoint listen, IPEndPoint upstream)
    {
        var sockets = new NamespaceSocketFactory(environment.Topology.Proxy);
        var connector = new UpstreamConnector(new UpstreamConnectorOptions(), sockets, TimeProvider.System);
        var relayOptions = RelayProcess.BenchRelayOptions(clientProtocol);
        relayOptions.Splice = splice;
        relayOptions.ReadSize = environment.RelayReadSize ?? relayOptions.ReadSize;
        var relay = new RelayServer(relayOptions, RelayProcess.BenchListenerOptions(listen), sockets, connector,
            TimeProvider.System, _ => { }, _ => upstream);
        try
        {
            relay.EnsureListener(listen.Port, listen.AddressFamily);
        }
        catch
        {
            await relay.DisposeAsync().ConfigureAwait(false);
            await connector.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        async ValueTask Stop()
        {
            await relay.DisposeAsync().ConfigureAwait(false);
            await connector.DisposeAsync().ConfigureAwait(false);
        }
        return new SubjectInstance(listen, null, Stop, () => System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds);
    }
}

/// <summary>Creates sockets inside a namespace: a socket belongs to the namespace of the thread that creates it.</summary>
internal sealed class NamespaceSocketFactory(NetNamespace ns) : SocketFactory
{
    // Blocking on purpose: setns is per thread, so creation runs synchronously on the Lab's namespace thread.
    public override Socket Create(AddressFamily family, TransportProtocol protocol) =>
        ns.RunInNamespaceAsync(() => base.Create(family, protocol)).WaitAsync(TimeSpan.FromSeconds(20)).GetAwaiter().GetResult();
}

/// <summary>What traffic an <see cref="EngineSubject"/> sends through the engine.</summary>
public enum EngineTraffic
{
    /// <summary>A plain TCP client to the TCP server: the downgrading engine's queue skips its SYN and SYN/ACK (no MPTCP
    /// option), so nothing of it reaches the engine.</summary>
    PassThroughTcp,

    /// <summary>An MPTCP client to an MPTCP server: every SYN is queued, the first probes, the rest are cache hits that
    /// pass (ServerSpeaksMptcp). The cost of a queued SYN's decision.</summary>
    PassThroughMptcp,

    /// <summary>An MPTCP client to the TCP server: intercepted and relayed (MPTCP client leg → TCP server leg).</summary>
    Holding,
}

/// <summary>
/// Our proxy, the real engine (<c>proxysel run</c> in the proxy namespace: NFQUEUE for SYNs, TPROXY, MP_PROXY probe,
/// relay). One engine process serves every engine subject; it intercepts only the server's "engine" ports, so the other
/// subjects never cross it. The client dials the server itself. <c>proxy-passthrough</c>: a plain TCP client, which the
/// downgrading engine's queue skips (only the SYN/ACK reaches user space). <c>proxy-passthrough-mptcp</c>: an MPTCP
/// client to an MPTCP server, every SYN queued and passed (after the first, from the cache). <c>proxy-holding</c>: an
/// MPTCP client toward the TCP-only server, the engine intercepts and relays (MPTCP client leg → TCP server leg).
/// </summary>
public sealed class EngineSubject(EngineTraffic traffic) : BenchSubject
{
    /// <summary>Printed by <c>proxysel run</c> once its rules and queue are in place.</summary>
    public const string ReadyLine = "proxysel: running";

    public EngineTraffic Traffic => traffic;

    public override string Name => traffic switch
    {
        EngineTraffic.Holding => "proxy-holding",
        EngineTraffic.PassThroughMptcp => "proxy-passthrough-mptcp",
        _ => "proxy-passthrough",
    };

    public override string Description => traffic switch
    {
        EngineTraffic.Holding => "our proxy (proxysel run) holding: MPTCP client intercepted via NFQUEUE/TPROXY, relayed to the TCP server",
        EngineTraffic.PassThroughMptcp => "our proxy (proxysel run) in pass-through: MPTCP client to an MPTCP server, every SYN queued and passed (cache hits after the first)",
        _ => "our proxy (proxysel run) in pass-through: TCP client, its SYN and SYN/ACK skip the queue (no MPTCP option)",
    };

    public override bool ClientMptcp => traffic != EngineTraffic.PassThroughTcp;

    /// <summary>The server end speaks MPTCP (the engine's cache learns it and passes).</summary>
    public bool ServerMptcp => traffic == EngineTraffic.PassThroughMptcp;

    // Pass-through holds nothing; the engine's RSS would only show its caches.
    public override bool MeasuresIdleMemory => traffic == EngineTraffic.Holding;

    public override Task<SubjectInstance> StartAsync(BenchEnvironment environment, int listenPort, IPEndPoint upstream)
    {
        ArgumentNullException.ThrowIfNull(environment);
        var engine = environment.Engine ?? throw new LabException("the engine (proxysel run) is not running");
        return Task.FromResult(new SubjectInstance(upstream, null, sharedGroup: engine.Pid));
    }

    /// <summary>Starts <c>proxysel run --ports ...</c> in the proxy namespace; returns once it is running.</summary>
    public static async Task<LabProcess> StartEngineAsync(NetNamespace proxy, IReadOnlyList<string> command, IEnumerable<int> ports,
        IReadOnlyList<string>? settings = null)
    {
        ArgumentNullException.ThrowIfNull(proxy);
        ArgumentNullException.ThrowIfNull(command);
        List<string> args =
        [
            .. command.Skip(1), "run", "--ports", string.Join(',', ports.Select(p => p.ToString(CultureInfo.InvariantCulture))),
            "--chain-prefix", "PSBENCH", .. (settings ?? []).SelectMany(s => (string[])["--set", s]),
        ];
        var process = proxy.StartProcess(command[0], args);
        try
        {
            await process.WaitForOutputAsync(ReadyLine, TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is LabException or TimeoutException)
        {
            var output = process.Output;
            await process.DisposeAsync().ConfigureAwait(false);
            throw new LabException($"proxysel run did not start: {output}", e);
        }
        return process;
    }
}

/// <summary>Debian's HAProxy, <c>mode tcp</c>, config in a temporary directory; optionally under <c>mptcpize run</c>
/// (MPTCP listener; its upstream socket falls back to TCP against the plain server).</summary>
public sealed class HaproxySubject(bool mptcpize) : BenchSubject
{
    public override string Name => mptcpize ? "haproxy-mptcp" : "haproxy";

    public override string Description => mptcpize
        ? "HAProxy mode tcp under mptcpize (MPTCP client leg → TCP server leg), default threads and buffers"
        : "HAProxy mode tcp, default threads and buffers";

    public override bool ClientMptcp => mptcpize;

    public override async Task<SubjectInstance> StartAsync(BenchEnvironment environment, int listenPort, IPEndPoint upstream)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(upstream);
        var dir = Directory.CreateTempSubdirectory($"{environment.Topology.Proxy.Name}-haproxy-").FullName;
        var listen = new IPEndPoint(environment.ProxyAddress, listenPort);
        // Two descriptors per connection must fit RLIMIT_NOFILE (inherited from the bench, raised when it may be).
        long maxconn = Math.Clamp((OpenFileLimit.Current - 100) / 2, 1000, 20_000);
        var config = $"""
            global
                maxconn {maxconn}
                log stderr format raw local0 err
            defaults
                mode tcp
                timeout connect 10s
                timeout client 1h
                timeout server 1h
            frontend bench
                bind {listen}
                default_backend upstream
            backend upstream
                server s1 {upstream}

            """;   // HAProxy refuses a config whose last line has no LF.
        var file = Path.Combine(dir, "haproxy.cfg");
        await File.WriteAllTextAsync(file, config).ConfigureAwait(false);
        List<string> args = ["haproxy", "-db", "-f", file];
        var process = mptcpize
            ? environment.Topology.Proxy.StartProcess("mptcpize", ["run", .. args])
            : environment.Topology.Proxy.StartProcess(args[0], args.Skip(1));
        ValueTask Cleanup()
        {
            Directory.Delete(dir, recursive: true);
            return ValueTask.CompletedTask;
        }
        return await SubjectStart.WaitReadyAsync(environment, listen, process, Cleanup).ConfigureAwait(false);
    }
}

/// <summary><c>socat -b 65536 TCP-LISTEN:…,fork TCP:server</c>; optionally under <c>mptcpize run</c>.</summary>
public sealed class SocatSubject(bool mptcpize) : BenchSubject
{
    public override string Name => mptcpize ? "socat-mptcp" : "socat";

    public override string Description => mptcpize
        ? "socat -b 65536 under mptcpize (MPTCP client leg → TCP server leg), fork per connection"
        : "socat -b 65536, fork per connection";

    public override bool ClientMptcp => mptcpize;

    // One process per connection: the group's RSS would count 10,000 copies of socat, not a held connection's cost.
    public override bool MeasuresIdleMemory => false;

    public override async Task<SubjectInstance> StartAsync(BenchEnvironment environment, int listenPort, IPEndPoint upstream)
    {
        ArgumentNullException.ThrowIfNull(environment);
        ArgumentNullException.ThrowIfNull(upstream);
        var listen = new IPEndPoint(environment.ProxyAddress, listenPort);
        List<string> args =
        [
            "socat", "-b", "65536",
            string.Create(CultureInfo.InvariantCulture, $"TCP4-LISTEN:{listenPort},bind={environment.ProxyAddress},reuseaddr,fork,backlog=4096"),
            string.Create(CultureInfo.InvariantCulture, $"TCP4:{upstream.Address}:{upstream.Port}"),
        ];
        var process = mptcpize
            ? environment.Topology.Proxy.StartProcess("mptcpize", ["run", .. args])
            : environment.Topology.Proxy.StartProcess(args[0], args.Skip(1));
        return await SubjectStart.WaitReadyAsync(environment, listen, process, null).ConfigureAwait(false);
    }
}

internal static class SubjectStart
{
    public static async Task<SubjectInstance> WaitReadyAsync(BenchEnvironment environment, IPEndPoint listen, LabProcess process, Func<ValueTask>? cleanup)
    {
        try
        {
            await LabNetwork.WaitForTcpListenerAsync(environment.Topology.Client, listen, TimeSpan.FromSeconds(15)).ConfigureAwait(false);
        }
        catch (LabException e)
        {
            var output = process.Output;
            await process.DisposeAsync().ConfigureAwait(false);
            if (cleanup is not null)
            {
                await cleanup().ConfigureAwait(false);
            }
            throw new LabException($"{process.Description} did not start: {e.Message} {output}", e);
        }
        return new SubjectInstance(listen, process, cleanup);
    }
}
