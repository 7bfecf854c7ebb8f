using Microsoft.Extensions.Logging;
using ProxySelection.Negotiation;

namespace ProxySelection.Host.Hosting;

/// <summary>
/// The <c>Proxy</c> section of <c>proxysel run</c>'s configuration. Every key has a default, so an empty file (or
/// none) runs a downgrade proxy on ports 80 and 443 as the command line alone did. This class is the schema: each
/// settable property is a key (<see cref="ConfigurationSchema"/> refuses any other), bound by the configuration
/// binder's source generator and checked by <see cref="ProxyHostOptionsValidator"/>. A new key is a property here,
/// with its doc comment, and its check in the validator.
/// </summary>
internal sealed class ProxyHostOptions
{
    public const string SectionName = "Proxy";

    /// <summary><c>downgrade</c> (MPTCP client, TCP server; the default) or <c>upgrade</c>.</summary>
    public ProxyRole Role { get; set; } = ProxyRole.Downgrade;

    /// <summary>
    /// <c>explicit</c> (MP_PROXY signals; the default), <c>implicit</c>, or <c>socks</c>: the host-configured mode alone
    /// (spec §7.10), a SOCKS5 server on <see cref="Socks"/> and no interception.
    /// </summary>
    public ProxyMode Mode { get; set; } = ProxyMode.Explicit;

    /// <summary><c>first</c> (the default), <c>nearest-server</c> or <c>priority</c>.</summary>
    public SelectionPolicy Policy { get; set; } = SelectionPolicy.First;

    /// <summary>This proxy's id in MP_PROXY, 1..255. Default 1.</summary>
    public int ProxyId { get; set; } = 1;

    /// <summary>Priority 0..15 for the priority policy (a 4-bit wire field). Default 8.</summary>
    public int Priority { get; set; } = 8;

    /// <summary>
    /// Operator key for MP_PROXY tags: hex text or raw bytes, at least 16 bytes. A relative path is taken from the
    /// configuration file's folder. Default none: a random key, so only this proxy verifies its own tags.
    /// </summary>
    public string? KeyFile { get; set; }

    /// <summary>The key id of <see cref="KeyFile"/>'s key, 1..255, carried in long-form tags. Default 1.</summary>
    public int KeyId { get; set; } = 1;

    /// <summary>
    /// A second operator key that verifies but does not sign: the next key in step 1 of a rotation (spec §9.4), the
    /// previous one until step 3 retires it. Needs <see cref="KeyFile"/> and <see cref="VerifyKeyId"/>. Default none.
    /// </summary>
    public string? VerifyKeyFile { get; set; }

    /// <summary>The key id of <see cref="VerifyKeyFile"/>'s key, 1..255, other than <see cref="KeyId"/>.</summary>
    public int? VerifyKeyId { get; set; }

    /// <summary>Destination ports to intercept, 1..65535: a JSON array or a comma-separated string. Default 80, 443.</summary>
    public IReadOnlyList<int> Ports { get; set; } = [80, 443];

    /// <summary>
    /// Downgrade role: addresses of this host's own at which its MPTCP clients may open further subflows, announced to
    /// them with ADD_ADDR and withdrawn (REMOVE_ADDR) when the proxy drains or stops (spec §7.8.1). Each must be a
    /// unicast address on an interface of this host, reachable from the clients (the operator asserts it). A JSON
    /// array or a comma-separated string. Default none.
    /// </summary>
    public IReadOnlyList<string> AnnounceAddresses { get; set; } = [];

    /// <summary>
    /// Instance mode (<c>Proxy:Instance</c>): this daemon is one of N behind ECMP or an L4 balancer (spec §12.6). Off by
    /// default; <see cref="InstanceSettings.Id"/> names the instance in telemetry in any mode.
    /// </summary>
    public InstanceSettings Instance { get; set; } = new();

    /// <summary>NFQUEUE number, 0..65535. Default 0.</summary>
    public int QueueNumber { get; set; }

    /// <summary>Connections held at most; at the limit the proxy defers. At least 1. Default 10,000.</summary>
    public int Capacity { get; set; } = 10_000;

    /// <summary>How long a SYN is held while its probe is out, 20..400 ms (see <see cref="NegotiatorOptions.MaxProbeTimeout"/>). Default 250 ms.</summary>
    public TimeSpan ProbeTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Prefix of the iptables chains; <c>proxysel cleanup</c> must use the same. Letters, digits, '-', '_'; 1..16 characters. Default PSEL.</summary>
    public string ChainPrefix { get; set; } = "PSEL";

    /// <summary>
    /// On SIGTERM, how long held connections may finish before they are closed and the rules removed, 0..5 min.
    /// Default 10 s, well inside systemd's 90 s TimeoutStopSec.
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The kernel fast path (issue 13), for <c>Role</c> downgrade: SYNs the capability cache already decides from the
    /// destination alone are passed (known MPTCP server) — and in implicit mode intercepted (known TCP-only server) —
    /// by rules on ipsets kept in step with the cache, without a queue trip (in explicit mode too with
    /// <see cref="KernelSigning"/>). Needs the ipset tool. Default true.
    /// </summary>
    public bool KernelFastPath { get; set; } = true;

    /// <summary>
    /// Explicit mode: the kernel writes the proxy's signed MP_PROXY on the listeners' SYN/ACKs and the upstream legs' SYNs
    /// (a cgroup sock_ops program; the daemon moves into a cgroup of its own), so a held connection crosses no egress
    /// queue, and with <see cref="KernelFastPath"/> a known TCP-only destination is intercepted in the kernel. A kernel
    /// that refuses is logged and the egress queue signs as before. Default true.
    /// </summary>
    public bool KernelSigning { get; set; } = true;

    /// <summary>
    /// With <see cref="KernelSigning"/>: MP_JOINs of connections this proxy holds go to its listener in the kernel (a
    /// raw-table eBPF match on the tokens its listener handed out), never queued; other joins are the queue's. A kernel
    /// that refuses is logged and every join crosses the queue. Default true.
    /// </summary>
    public bool KernelJoins { get; set; } = true;

    /// <summary>A relayed connection with no bytes either way for this long is closed, 1 s..1 day. Default 5 min.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The control socket <c>proxysel status</c> and <c>proxysel cache</c> talk to: an absolute path of at most
    /// 107 bytes (a unix socket address), or <c>none</c>. Default
    /// <c>/run/proxysel/&lt;ChainPrefix&gt;-net&lt;inode&gt;.sock</c>, the inode naming this network namespace, so
    /// proxies in two namespaces of one host do not collide; <c>proxysel status</c> finds the same path from the same
    /// namespace. Its mode 0660 and its folder's 0750 are the access control.
    /// </summary>
    public string? ControlSocket { get; set; }

    /// <summary>
    /// The SOCKS5 listen address and port (host-configured mode, spec §7.10), e.g. <c>0.0.0.0:1080</c> or
    /// <c>[2001:db8::1]:1080</c>. Default: <see cref="DefaultSocks"/> in mode <c>socks</c>, none otherwise; set in a
    /// transparent mode, the proxy serves SOCKS clients in addition.
    /// </summary>
    public string? Socks { get; set; }

    /// <summary>
    /// RFC 1929 users for the SOCKS server, a file of <c>name:password</c> lines; relative paths are taken from the
    /// configuration file's folder. Default none: NO AUTH. Needs <see cref="Socks"/> or mode <c>socks</c>.
    /// </summary>
    public string? SocksUsersFile { get; set; }

    /// <summary>
    /// A file the engine appends its decisions to as JSON lines (one <c>ProxyEvent</c> per line: SYN verdicts, probes,
    /// holds, accepts, relayed connections, start and stop with the counters), for programs that read what the proxy
    /// did (the lab, interop, tests). Default none.
    /// </summary>
    public string? EventsFile { get; set; }

    /// <summary>
    /// The 0-RTT TCP Convert (RFC 8803) listen address and port, e.g. <c>0.0.0.0:5124</c>: an MPTCP listener with TCP
    /// Fast Open (the namespace's <c>net.ipv4.tcp_fastopen</c> must enable the server side). Default none; any mode.
    /// </summary>
    public string? Convert { get; set; }

    public const string DefaultSocks = "0.0.0.0:1080";

    /// <summary>The SOCKS endpoint in force: <see cref="Socks"/>, or the default in mode <c>socks</c>; null for none.</summary>
    public string? SocksEndpoint => Socks ?? (Mode == ProxyMode.Socks ? DefaultSocks : null);

    /// <summary>How log lines are written to stdout: <c>plain</c> (the message alone; the default), <c>json</c> or <c>systemd</c> (with journald priority prefixes).</summary>
    public LogFormat Logging { get; set; } = LogFormat.Plain;

    /// <summary>
    /// The lowest level of log line written: <c>trace</c>, <c>debug</c> (adds the engine's per-packet lines),
    /// <c>information</c> (the default), <c>warning</c>, <c>error</c>, <c>critical</c> or <c>none</c>. The
    /// <c>Logging:LogLevel</c> section sets it per category (e.g. <c>"ProxySelection.Engine.ProxyEngine": "Debug"</c>).
    /// </summary>
    public LogLevel LogLevel { get; set; } = LogLevel.Information;

    /// <summary>A start failure prints its stack trace after its one line; also <c>proxysel run --debug</c>. Default false.</summary>
    public bool Debug { get; set; }

    // --- Hardening against a hostile network (issue 12): rate limits, cache and hold bounds, the domain edge. ---

    /// <summary>Probes a second started for SYNs from one source prefix (IPv4 /24, IPv6 /56); more pass untouched. 1..1,000,000, default 64.</summary>
    public int ProbeRatePerSourcePrefix { get; set; } = 64;

    /// <summary>Probes a second toward one destination (address and port); more pass untouched. 1..1,000,000, default 16.</summary>
    public int ProbeRatePerDestination { get; set; } = 16;

    /// <summary>Probes a second this proxy starts in all, whatever the source or destination (spec §11.3); more pass untouched. 0 (off)..1,000,000, default 512.</summary>
    public int ProbeRateGlobal { get; set; } = 512;

    /// <summary>Sources and destinations each probe-rate table remembers (the least recent goes). 1..4,194,304, default 65,536.</summary>
    public int ProbeRateTableEntries { get; set; } = 65_536;

    /// <summary>How long a fact learned from another prober's SYN/ACK (not this proxy's own probe) is believed. 1 s..2 min, default 60 s.</summary>
    public TimeSpan ObservedTtl { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>How long an intercepted connection waits for the client's connection to reach the listener. Above 0, at most 10 s (spec), default 3 s.</summary>
    public TimeSpan AdoptionTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>SOCKS/Convert clients of one source (IPv4 address, IPv6 /64) in their handshake at once. At least 1, default 16.</summary>
    public int SocksMaxHandshakesPerSource { get; set; } = 16;

    /// <summary>SOCKS/Convert connections of one source at once. At least 1, default 1,024.</summary>
    public int SocksMaxConnectionsPerSource { get; set; } = 1024;

    /// <summary>SYNs held at once while probes are out; beyond, SYNs pass untouched. 1..1,048,576, default 256.</summary>
    public int MaxHeldSyns { get; set; } = 256;

    /// <summary>Queue room for packets waiting for the engine beside the held SYNs (the kernel passes what does not fit). 16..1,048,576, default 64.</summary>
    public int QueueWaitRoom { get; set; } = 64;

    /// <summary>The daemon's threads at nice -10 and its hold-release thread SCHED_RR 1, when permitted (CAP_SYS_NICE, or LimitNICE/LimitRTPRIO). Default true.</summary>
    public bool RaisedScheduling { get; set; } = true;

    /// <summary>Interfaces where the operator's domain ends: SYNs and SYN/ACKs leaving by them lose MP_PROXY (spec §7.12). Default none.</summary>
    public IReadOnlyList<string> EdgeInterfaces { get; set; } = [];

    /// <summary>The control socket path in force: <see cref="ControlSocket"/> or the per-namespace default; null for none.</summary>
    public string? ControlSocketPath => ControlSocket switch
    {
        null => Control.ControlSocketPaths.Default(ChainPrefix),
        var path when string.Equals(path, NoControlSocket, StringComparison.OrdinalIgnoreCase) => null,
        var path => path,
    };

    public const string NoControlSocket = "none";
}

/// <summary>
/// <c>Proxy:Instance</c>: one proxy instance of a tier spread by ECMP (BGP anycast) or an L4 balancer (spec §12.6).
/// </summary>
/// <example>
/// <code>
/// "Instance": {
///   "Enabled": true,
///   "Id": "proxy-3",
///   "AnnounceCommand": "birdc -s /run/bird/bird.ctl enable service",
///   "WithdrawCommand": "birdc -s /run/bird/bird.ctl disable service"
/// }
/// </code>
/// </example>
internal sealed class InstanceSettings
{
    public const string SectionName = "Instance";

    /// <summary>
    /// At start, sets <c>net.mptcp.allow_join_initial_addr_port=0</c> in the daemon's network namespace (the C flag in
    /// its MP_CAPABLE: clients join only the addresses it announces, <see cref="ProxyHostOptions.AnnounceAddresses"/>,
    /// which instance mode needs) and restores the old value at stop; refuses to start if the setting cannot be
    /// written. A drain withdraws the service route first and keeps the announced addresses until the held
    /// connections have ended. Default false.
    /// </summary>
    public bool Enabled { get; set; }

    /// <summary>
    /// <c>service.instance.id</c> of every span and metric, 1..128 printable characters without spaces. Default: the
    /// host name and the network namespace's inode, <c>HOST-netINODE</c>.
    /// </summary>
    public string? Id { get; set; }

    /// <summary>
    /// A shell command (<c>/bin/sh -c</c>) that makes the routing engine announce the service address, run once the
    /// rules are in, as READY is sent; e.g. <c>birdc -s /run/bird/bird.ctl enable service</c>. A failure is logged and
    /// the daemon stays up, unannounced. Needs <see cref="Enabled"/>. Default none.
    /// </summary>
    public string? AnnounceCommand { get; set; }

    /// <summary>
    /// The command that withdraws it: run first on a drain or stop, before any connection is touched. Put the same
    /// command in the unit's <c>ExecStopPost=</c> for a daemon that dies (SIGKILL included). Needs <see cref="Enabled"/>.
    /// Default none.
    /// </summary>
    public string? WithdrawCommand { get; set; }

    /// <summary>
    /// The bound on the routers' convergence after a withdrawal: a draining instance's SOCKS/Convert fronts go on
    /// accepting for this long (a router may still send a new client here), then serve their accept queue and close
    /// (spec §12.6). 0..60 s; default 2 s (the lab's BGP and resilient group: 57-374 ms).
    /// </summary>
    public TimeSpan ConvergenceTime { get; set; } = TimeSpan.FromSeconds(2);

    public static string Key(string name) => ProxyConfiguration.Key(SectionName + ":" + name);
}

/// <summary>How the proxy is brought into a connection (design §1).</summary>
internal enum ProxyMode
{
    /// <summary>Transparent, with MP_PROXY signals.</summary>
    Explicit,

    /// <summary>Transparent, no signals.</summary>
    Implicit,

    /// <summary>Host-configured only: a SOCKS5 server the host talks to on purpose; nothing is intercepted.</summary>
    Socks,
}

/// <summary>The console formats <c>proxysel run</c> can write.</summary>
internal enum LogFormat
{
    /// <summary>The message alone, one line each: what the demo and the tests parse.</summary>
    Plain,

    /// <summary>One JSON object per line (Microsoft.Extensions.Logging's JSON console formatter).</summary>
    Json,

    /// <summary>One line each with a <c>&lt;6&gt;</c>-style syslog priority prefix, which journald reads as the level.</summary>
    Systemd,
}
