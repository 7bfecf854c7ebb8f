using ProxySelection.Negotiation;

namespace ProxySelection.Engine;

/// <summary>
/// Which routine passes get their <c>syn ...: Pass (...)</c> line at Information: the first per destination in each
/// <see cref="Window"/>; the others go to Debug (same text). Routine: a pass the capability cache decided for a client's
/// own SYN, and an MP_JOIN for a connection this proxy does not hold (one engine keeps one sampler for each). A line per
/// SYN cost ~15 % of the engine's CPU in MPTCP pass-through (perf: the console writer's thread and the hook's wakeup of
/// it per line). Used from the hook thread only.
/// </summary>
public sealed class CachePassLogSampler(TimeProvider time)
{
    /// <summary>Destinations remembered at most; beyond, the memory is cleared (each logs once more at Information).</summary>
    public const int MaxDestinations = 4096;

    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    private readonly Dictionary<DestinationKey, long> _loggedAt = [];

    /// <summary>A pass the capability cache decided for a client's own SYN (no MP_PROXY signal): the routine per-SYN case.</summary>
    public static bool IsRoutineCachePass(in SynDecision decision, ProxySignal? signal) =>
        signal is null && decision.Verdict == SynVerdict.Pass && decision.Reason is DecisionReason.ServerSpeaksMptcp or DecisionReason.ServerTcpOnly
            or DecisionReason.ProxyBeyond or DecisionReason.ProbeFailedRecently or DecisionReason.ProbedByOther;

    /// <summary>An MP_JOIN passed at once because this proxy does not hold its connection (not one parked for an accept).</summary>
    public static bool IsRoutineJoinPass(in SynDecision decision, bool parked) =>
        !parked && decision is { Verdict: SynVerdict.Pass, Reason: DecisionReason.JoinTokenForeign };

    /// <summary>True when this pass to <paramref name="destination"/> is logged at Information (and remembered).</summary>
    public bool AtInformation(DestinationKey destination)
    {
        long now = time.GetTimestamp();
        if (_loggedAt.TryGetValue(destination, out long at) && time.GetElapsedTime(at, now) < Window)
        {
            return false;
        }

        if (_loggedAt.Count >= MaxDestinations)
        {
            _loggedAt.Clear();
        }

        _loggedAt[destination] = now;
        return true;
    }
}
