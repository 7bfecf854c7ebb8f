using System.Globalization;

using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Diagnostics;

/// <summary><c>status</c>: the daemon, its held connections, its decision counters and a cache summary.</summary>
public sealed record StatusReply(DaemonStatus Daemon, IReadOnlyList<ConnectionStatus> Connections, IReadOnlyDictionary<string, long> Decisions, CacheSummary Cache);

public sealed record DaemonStatus(
    string State, string Role, string Mode, string Policy, int ProxyId, int Priority, IReadOnlyList<ushort> Ports,
    double UptimeSeconds, int HeldConnections, int HeldSyns, int ProbesInFlight)
{
    /// <summary>service.instance.id, as the daemon's telemetry and <c>started</c> event carry it; absent when the caller has none.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? InstanceId { get; init; }
}

/// <summary>One held connection; <c>Subflows</c> lists the MPTCP leg's subflows as the kernel reports them (MPTCP_SUBFLOW_ADDRS).</summary>
public sealed record ConnectionStatus(
    string Client, string Server, string Role, string? Reason, double? AgeSeconds, long BytesUp, long BytesDown,
    string MptcpLeg, string MptcpStatus, string? Token, int SubflowCount, IReadOnlyList<SubflowStatus> Subflows)
{
    /// <summary><c>host-configured</c> for a SOCKS connection (the host named <see cref="Server"/>); absent for intercepted ones.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? Mode { get; init; }
}

public sealed record SubflowStatus(string Local, string Remote, string State, uint RttUs);

public sealed record CacheSummary(int Entries, int Capacity, long Hits, long Misses, long Evictions, long Expirations, double? HitRatio)
{
    /// <summary>Own probes that re-checked an earlier own server fact (spec §6), and those that found it changed.</summary>
    public long FactsRechecked { get; init; }

    public long FactsChanged { get; init; }
}

/// <summary><c>cache-show</c>.</summary>
public sealed record CacheReply(IReadOnlyList<CacheEntryStatus> Entries, CacheSummary Summary);

public sealed record CacheEntryStatus(string Destination, string State, int? ProxyId, double AgeSeconds, double TtlSeconds)
{
    /// <summary>A server fact's standing (spec §6): <c>confirmed</c>, <c>provisional</c> (one own probe) or <c>observed</c>; absent for other states.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public string? Checked { get; init; }
}

/// <summary><c>cache-flush</c>.</summary>
public sealed record FlushReply(int Removed);

/// <summary><c>reload</c>: whether the new settings took, and the line the daemon logged.</summary>
public sealed record ReloadReply(bool Applied, string Message);

/// <summary>Builds the replies from the engine's live state.</summary>
public static class StatusReplies
{
    public static StatusReply Status(ProxyEngine engine, ProxyEngineOptions options, TimeSpan uptime, string? instanceId = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        ArgumentNullException.ThrowIfNull(options);
        var negotiation = options.Negotiation;
        var negotiator = engine.Negotiator;
        var daemon = new DaemonStatus(
            engine.IsDraining ? "draining" : "running",
            Lower(negotiation.Role), options.Transparent ? Lower(negotiation.Mode) : ProxyEngine.HostConfiguredMode, negotiation.Policy == SelectionPolicy.NearestServer ? "nearest-server" : Lower(negotiation.Policy),
            negotiation.ProxyId, negotiation.Priority, options.Ports, Math.Round(uptime.TotalSeconds, 3),
            negotiator.ActiveConnections, negotiator.HeldSyns, negotiator.ProbesInFlight) { InstanceId = instanceId };
        var connections = engine.HeldConnections().Select(Connection).ToList();
        var decisions = Decisions(engine.Counters);
        decisions["probes_rate_limited"] = negotiator.ProbesRateLimited;
        decisions["probes_rate_capped"] = negotiator.ProbesRateCapped;
        void Front(string name, ProxySelection.Engine.Fronts.SocksCounters counters)
        {
            decisions[name + "_accepted"] = counters.Accepted;
            decisions[name + "_refused"] = counters.Refused;
            decisions[name + "_handshake_failed"] = counters.HandshakeFailed;
            decisions[name + "_connect_failed"] = counters.ConnectFailed;
            decisions[name + "_connected"] = counters.Connected;
        }

        if (options.Socks?.Listen is not null)
        {
            Front("socks", engine.SocksCounters);
        }

        if (options.Socks?.Convert is not null)
        {
            Front("convert", engine.ConvertCounters);
        }

        return new StatusReply(daemon, connections, decisions, Summary(negotiator.Cache));
    }

    public static CacheReply Cache(CapabilityCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        var entries = cache.Snapshot().Select(item => new CacheEntryStatus(
            item.Destination.ToString(),
            item.Entry.State.ToString(),
            item.Entry.State == CapabilityState.ProxyBeyond ? item.Entry.ProxyId : null,
            Math.Round(item.Age.TotalSeconds, 3),
            Math.Round(item.Remaining.TotalSeconds, 3))
        {
            Checked = !item.Entry.IsServerFact ? null
                : item.Entry.Source == CapabilitySource.Observed ? "observed"
                : item.Entry.Provisional ? "provisional" : "confirmed",
        }).ToList();
        return new CacheReply(entries, Summary(cache));
    }

    public static CacheSummary Summary(CapabilityCache cache)
    {
        ArgumentNullException.ThrowIfNull(cache);
        long hits = cache.Hits;
        long misses = cache.Misses;
        return new CacheSummary(cache.Count, cache.Capacity, hits, misses, cache.Evictions, cache.Expirations,
            hits + misses == 0 ? null : Math.Round((double)hits / (hits + misses), 4))
        {
            FactsRechecked = cache.FactsRechecked,
            FactsChanged = cache.FactsChanged,
        };
    }

    private static ConnectionStatus Connection(HeldConnection held)
    {
        var mptcp = held.Mptcp;
        bool active = mptcp.Status == MptcpStatus.Active;
        return new ConnectionStatus(
            held.Client.ToString(), held.Destination.ToString(), Lower(held.Role), held.Reason?.ToString(),
            held.Age is { } age ? Math.Round(age.TotalSeconds, 3) : null,
            held.BytesClientToUpstream, held.BytesUpstreamToClient, held.MptcpLeg, mptcp.Status.ToString(),
            active ? mptcp.Info.Token.ToString("x8", CultureInfo.InvariantCulture) : null,
            active ? Math.Max(mptcp.Info.Subflows, mptcp.Subflows.Length) : 0,
            [.. mptcp.Subflows.Select(s => new SubflowStatus(s.Local.ToString(), s.Remote.ToString(), TcpStateName(s.TcpState), s.RttMicroseconds))])
        {
            Mode = held.Mode,
        };
    }

    private static Dictionary<string, long> Decisions(ProxyCounters c) => new()
    {
        ["syns"] = c.Syns,
        ["passed"] = c.Passed,
        ["held"] = c.Held,
        ["released"] = c.Released,
        ["intercepted"] = c.Intercepted,
        ["joins_intercepted"] = c.JoinsIntercepted,
        ["joins_kernel"] = c.JoinsKernel,
        ["joins_passed_kernel"] = c.JoinsPassedKernel,
        ["probes"] = c.ProbesStarted,
        ["probes_answered"] = c.ProbesAnswered,
        ["probes_failed"] = c.ProbesFailed,
        ["probes_adopted"] = c.ProbesAdopted,
        ["probe_answers_sent"] = c.ProbeAnswersSent,
        ["relayed"] = c.Relayed,
        ["hook_failures"] = c.HookFailures,
        ["kernel_passed"] = c.KernelPassed,
        ["kernel_intercepted"] = c.KernelIntercepted,
        ["kernel_signed_syns"] = c.KernelSignedSyns,
        ["kernel_signed_synacks"] = c.KernelSignedSynAcks,
    };

    /// <summary>include/net/tcp_states.h.</summary>
    private static string TcpStateName(byte state) => state switch
    {
        1 => "established",
        2 => "syn-sent",
        3 => "syn-recv",
        4 => "fin-wait1",
        5 => "fin-wait2",
        6 => "time-wait",
        7 => "close",
        8 => "close-wait",
        9 => "last-ack",
        10 => "listen",
        11 => "closing",
        _ => state.ToString(CultureInfo.InvariantCulture),
    };

    private static string Lower<T>(T value)
        where T : struct, Enum => value.ToString().ToLowerInvariant();
}
