using System.Globalization;
using System.Net;
using System.Net.Sockets;
using ProxySelection.Interception.Netlink;
using ProxySelection.Interception.Nfqueue;
using ProxySelection.Interception.Rules;

namespace ProxySelection.Host.Hosting;

/// <summary>The classes of <c>proxysel run</c> start failures, one exit code each (<see cref="ExitCodes"/>).</summary>
internal enum StartFailureKind
{
    NotPermitted,
    AddressNotAvailable,
    PortInUse,
    QueueInUse,
    KernelFeatureMissing,
    Other,
}

/// <summary>Why the proxy did not start: its class and the one line that names the setting or resource and the cause.</summary>
internal sealed record StartFailure(StartFailureKind Kind, string Reason)
{
    public int ExitCode => Kind switch
    {
        StartFailureKind.NotPermitted => ExitCodes.NotPermitted,
        StartFailureKind.AddressNotAvailable => ExitCodes.AddressNotAvailable,
        StartFailureKind.PortInUse => ExitCodes.PortInUse,
        StartFailureKind.QueueInUse => ExitCodes.QueueInUse,
        StartFailureKind.KernelFeatureMissing => ExitCodes.KernelFeatureMissing,
        _ => ExitCodes.StartFailed,
    };
}

/// <summary>A start failure found by the daemon itself (a preflight check), already classified.</summary>
internal sealed class StartFailureException(StartFailure failure) : Exception(failure.Reason)
{
    public StartFailure Failure { get; } = failure;
}

/// <summary>What a classification needs to know about this host beyond the exception.</summary>
/// <param name="HasNetAdmin">CAP_NET_ADMIN is in the effective set: an EPERM from NFQUEUE then means the queue is taken.</param>
/// <param name="LocalAddresses">This host's addresses, to tell which listen address is not one.</param>
/// <param name="InUse">Whether an endpoint is taken by another socket now (a test bind).</param>
internal sealed record HostFacts(bool HasNetAdmin, IReadOnlySet<IPAddress> LocalAddresses, Func<IPEndPoint, bool> InUse)
{
    /// <summary>The facts of this process and host.</summary>
    public static HostFacts Current() => new(HostChecks.HasNetAdmin(), ProxySelection.Engine.AddressAnnouncer.LocalAddresses(), HostChecks.IsInUse);
}

/// <summary>Maps what the engine, the interception and the sockets throw at start to a <see cref="StartFailure"/>.</summary>
internal static class StartFailures
{
    private const int EPerm = 1;
    private const int ENoEnt = 2;
    private const int EBusy = 16;
    private const int EProtoNoSupport = 93;

    public static StartFailure Classify(Exception exception, ProxyHostOptions options, HostFacts facts)
    {
        ArgumentNullException.ThrowIfNull(exception);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(facts);
        for (var e = exception; e is not null; e = e is AggregateException { InnerExceptions.Count: 1 } a ? a.InnerExceptions[0] : e.InnerException)
        {
            if (ClassifyOne(e, options, facts) is { } failure)
            {
                return failure;
            }
        }

        return new StartFailure(StartFailureKind.Other, exception.Message);
    }

    private static StartFailure? ClassifyOne(Exception e, ProxyHostOptions options, HostFacts facts) => e switch
    {
        StartFailureException known => known.Failure,
        NfqueueException queue => Queue(queue, options, facts),
        MptcpPmException pm => pm.Errno == EPerm
            ? NotPermitted("the MPTCP path manager's netlink events", pm.Message)
            : new StartFailure(StartFailureKind.KernelFeatureMissing, $"MPTCP path manager netlink (mptcp_pm): {pm.Message}; is MPTCP built into this kernel?"),
        InterceptionRulesException rules => Rules(rules),
        SocketException socket => Socket(socket, options, facts),
        UnauthorizedAccessException denied => NotPermitted("a file or socket", denied.Message),
        _ => null,
    };

    private static StartFailure? Queue(NfqueueException e, ProxyHostOptions options, HostFacts facts)
    {
        string key = ProxyConfiguration.Key(nameof(ProxyHostOptions.QueueNumber));
        switch (e.Errno)
        {
            // nfnetlink answers EPERM both to a caller without CAP_NET_ADMIN and to a bind of a queue another socket holds.
            case EPerm when facts.HasNetAdmin:
            case EBusy:
                return new StartFailure(StartFailureKind.QueueInUse, string.Create(CultureInfo.InvariantCulture,
                    $"{key}: NFQUEUE queue {options.QueueNumber} or {options.QueueNumber + 1} (egress) is bound by another process (another proxysel?); give each proxy its own pair with --queue"));
            case EPerm:
                return NotPermitted("NFQUEUE", e.Message);
            case EProtoNoSupport or ENoEnt:
                return new StartFailure(StartFailureKind.KernelFeatureMissing, $"NFQUEUE: {e.Message}; is the nfnetlink_queue module loaded?");
            default:
                return null;
        }
    }

    private static StartFailure? Rules(InterceptionRulesException e)
    {
        string message = e.Message;
        if (Has(message, "Permission denied") || Has(message, "you must be root") || Has(message, "Operation not permitted"))
        {
            return NotPermitted("iptables", message);
        }

        string[] missing = ["No chain/target/match by that name", "Couldn't load", "missing kernel module", "not supported", "do you need to insmod",
            "Table does not exist", "is not usable", "No such file or directory"];
        if (missing.Any(m => Has(message, m)))
        {
            var feature = new[] { "NFQUEUE", "TPROXY", "socket", "mark" }.FirstOrDefault(f => Has(message, f));
            string what = feature is null ? "an iptables feature" : $"the iptables {feature} {(feature is "socket" or "mark" ? "match" : "target")}";
            return new StartFailure(StartFailureKind.KernelFeatureMissing, $"{what} is missing (kernel module not loaded or not built?): {message}");
        }

        return null;
    }

    private static StartFailure? Socket(SocketException e, ProxyHostOptions options, HostFacts facts)
    {
        switch (e.SocketErrorCode)
        {
            case SocketError.AddressAlreadyInUse:
            {
                var taken = Listeners(options).FirstOrDefault(l => facts.InUse(l.EndPoint));
                return new StartFailure(StartFailureKind.PortInUse, taken.Key is null
                    ? $"a port the proxy listens on ({Describe(options)}) is in use by another socket: {e.Message}"
                    : $"{taken.Key}: {taken.EndPoint} is in use by another socket: {e.Message}");
            }

            case SocketError.AddressNotAvailable:
            {
                var foreign = Listeners(options).FirstOrDefault(l => !IsWildcard(l.EndPoint.Address) && !facts.LocalAddresses.Contains(l.EndPoint.Address));
                return new StartFailure(StartFailureKind.AddressNotAvailable, foreign.Key is null
                    ? $"a listen address ({Describe(options)}) is not an address of this host: {e.Message}"
                    : $"{foreign.Key}: {foreign.EndPoint.Address} is not an address of this host's interfaces: {e.Message}");
            }

            case SocketError.AccessDenied:
                return NotPermitted("a listening socket (ports below 1024 need CAP_NET_BIND_SERVICE)", e.Message);
            case SocketError.ProtocolNotSupported or SocketError.ProtocolOption when HostChecks.MptcpProblem() is { } mptcp:
                return new StartFailure(StartFailureKind.KernelFeatureMissing, mptcp);
            default:
                return null;
        }
    }

    private static StartFailure NotPermitted(string what, string cause) => new(StartFailureKind.NotPermitted,
        $"not permitted ({what}: {cause}); run as root or give the service CAP_NET_ADMIN (AmbientCapabilities=CAP_NET_ADMIN CAP_NET_BIND_SERVICE)");

    /// <summary>Every endpoint the proxy binds, with the key that names it.</summary>
    private static IEnumerable<(string Key, IPEndPoint EndPoint)> Listeners(ProxyHostOptions options)
    {
        if (options.SocksEndpoint is { } socks && ProxyConfiguration.TryParseEndPoint(socks, out var socksEndPoint))
        {
            yield return (ProxyConfiguration.Key(nameof(ProxyHostOptions.Socks)), socksEndPoint);
        }

        if (options.Convert is { } convert && ProxyConfiguration.TryParseEndPoint(convert, out var convertEndPoint))
        {
            yield return (ProxyConfiguration.Key(nameof(ProxyHostOptions.Convert)), convertEndPoint);
        }

        if (options.Mode != ProxyMode.Socks)
        {
            foreach (var port in options.Ports)
            {
                yield return (ProxyConfiguration.Key(nameof(ProxyHostOptions.Ports)), new IPEndPoint(IPAddress.Any, port));
            }
        }
    }

    private static string Describe(ProxyHostOptions options) => string.Join(", ", Listeners(options).Select(l => $"{l.Key} {l.EndPoint}"));

    private static bool IsWildcard(IPAddress address) => address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any);

    private static bool Has(string text, string part) => text.Contains(part, StringComparison.OrdinalIgnoreCase);
}

/// <summary>Reads of this host's state for the start checks: capabilities, the MPTCP switch, a test bind.</summary>
internal static class HostChecks
{
    private const int CapNetAdmin = 12;

    /// <summary>CAP_NET_ADMIN in this process's effective set (<c>CapEff</c> of /proc/self/status).</summary>
    public static bool HasNetAdmin()
    {
        try
        {
            return HasCapability(File.ReadAllText("/proc/self/status"), CapNetAdmin);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>Whether the <c>CapEff:</c> line of a /proc status text has bit <paramref name="capability"/>.</summary>
    public static bool HasCapability(string status, int capability)
    {
        ArgumentNullException.ThrowIfNull(status);
        foreach (var line in status.Split('\n'))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal)
                && ulong.TryParse(line["CapEff:".Length..].Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var effective))
            {
                return (effective & (1UL << capability)) != 0;
            }
        }

        return false;
    }

    /// <summary>Why MPTCP sockets cannot be made in this namespace, or null when they can (as far as the sysctl tells).</summary>
    public static string? MptcpProblem()
    {
        string? enabled;
        try
        {
            enabled = File.ReadAllText("/proc/sys/net/mptcp/enabled");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            enabled = null;
        }

        return MptcpProblem(enabled);
    }

    /// <summary>From the text of <c>/proc/sys/net/mptcp/enabled</c> (null: the file is not there).</summary>
    public static string? MptcpProblem(string? enabled) => enabled?.Trim() switch
    {
        null => "MPTCP is not in this kernel (no /proc/sys/net/mptcp); the proxy needs CONFIG_MPTCP",
        "0" => "net.mptcp.enabled=0: MPTCP is disabled in this network namespace; enable it with sysctl -w net.mptcp.enabled=1",
        _ => null,
    };

    /// <summary>A test bind (no SO_REUSEADDR): true when another socket holds the endpoint.</summary>
    public static bool IsInUse(IPEndPoint endPoint)
    {
        ArgumentNullException.ThrowIfNull(endPoint);
        try
        {
            using var probe = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            probe.Bind(endPoint);
            return false;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode == SocketError.AddressAlreadyInUse;
        }
    }
}
