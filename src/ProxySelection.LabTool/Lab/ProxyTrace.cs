using System.Globalization;
using System.Runtime.CompilerServices;
using ProxySelection.Engine.Diagnostics;
using ProxySelection.Lab;

namespace ProxySelection.LabTool.Lab;

/// <summary>
/// Reads what a <c>proxysel run</c> process decided, from its event file (<c>--events</c>, <see cref="ProxyEvent"/>s): its
/// decisions (SYNs, probes, holds, accepts, relayed connections) and the counters of its <c>stopped</c> event.
/// </summary>
internal static class ProxyTrace
{
    private static readonly ConditionalWeakTable<LabProcess, string> Files = [];

    /// <summary>The <c>run</c> arguments that send a proxy's events to <paramref name="file"/>; <see cref="Track"/> it once started.</summary>
    public static string[] EventsArguments(string file) => ["--events", file];

    /// <summary>Remembers that <paramref name="process"/> writes its events to <paramref name="file"/>.</summary>
    public static LabProcess Track(LabProcess process, string file)
    {
        Files.AddOrUpdate(process, file);
        return process;
    }

    /// <summary>The events <paramref name="process"/> wrote so far (none for an untracked process).</summary>
    public static IReadOnlyList<ProxyEvent> Read(LabProcess process) =>
        Files.TryGetValue(process, out var file) ? ProxyEvents.ReadFile(file) : [];

    /// <summary>Waits until <paramref name="process"/> wrote an event matching <paramref name="match"/>; <paramref name="time"/> defaults to the system clock.</summary>
    public static async Task<ProxyEvent> WaitForAsync(LabProcess process, Func<ProxyEvent, bool> match, TimeSpan timeout, CancellationToken ct, TimeProvider? time = null)
    {
        time ??= TimeProvider.System;
        long started = time.GetTimestamp();
        while (true)
        {
            if (Read(process).FirstOrDefault(match) is { } found)
            {
                return found;
            }

            if (time.GetElapsedTime(started) > timeout)
            {
                throw new TimeoutException($"no such event from pid {process.Pid}: {process.Output}");
            }

            if (process.HasExited && Read(process).FirstOrDefault(match) is null)
            {
                throw new InvalidOperationException($"proxy exited: {process.Output}");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(50), time, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The engine's decisions, in order, each as a line of text with a plain-words gloss.</summary>
    public static IReadOnlyList<(string Line, string Gloss)> Events(IReadOnlyList<ProxyEvent> events) =>
        [.. events.Select(e => (ProxyEventText.Format(e), Gloss(e))).Where(e => e.Item2.Length > 0)];

    /// <summary>The counters of the <c>stopped</c> event (empty when the proxy has not stopped).</summary>
    public static IReadOnlyDictionary<string, double> Counters(IReadOnlyList<ProxyEvent> events)
    {
        var stopped = events.LastOrDefault(e => e.Event == "stopped")?.Counters;
        return stopped is null
            ? new Dictionary<string, double>(StringComparer.Ordinal)
            : stopped.ToDictionary(c => c.Key, c => (double)c.Value, StringComparer.Ordinal);
    }

    /// <summary>The first relay event's fields (<c>up</c>, <c>down</c>, <c>subflows</c>, <c>client</c>, <c>upstream</c>, <c>reason</c>), or null.</summary>
    public static IReadOnlyDictionary<string, string>? Relay(IReadOnlyList<ProxyEvent> events)
    {
        if (events.FirstOrDefault(e => e.Event == "relay") is not { } relay)
        {
            return null;
        }

        var text = CultureInfo.InvariantCulture;
        return new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["up"] = relay.Up?.ToString(text) ?? "?",
            ["down"] = relay.Down?.ToString(text) ?? "?",
            ["subflows"] = relay.Subflows?.ToString(text) ?? "?",
            ["client"] = relay.ClientMptcp ?? "?",
            ["upstream"] = relay.UpstreamMptcp ?? "?",
            ["connect"] = relay.Connect ?? "?",
            ["reason"] = relay.Reason ?? "?",
        };
    }

    private static string Gloss(ProxyEvent e) => e switch
    {
        { Event: "syn", Kind: "MpJoin", Verdict: "InterceptJoin" } => "a second subflow (MP_JOIN) for a connection this proxy holds: taken over too",
        { Event: "syn", Kind: "MpJoin", Verdict: "Wait for the accept" } => "a second subflow (MP_JOIN) arrived before its connection was accepted: parked until then",
        { Event: "syn", Kind: "MpJoin" } => "MP_JOIN SYN seen",
        { Event: "join", Verdict: "InterceptJoin" } => "the parked MP_JOIN belongs to the held connection: taken over (second subflow)",
        { Event: "join" } => "parked MP_JOIN released",
        { Event: "syn", Kind: "Tcp", Verdict: "HoldAndProbe" } => "plain TCP SYN seen: held while the server is probed (with MPTCP)",
        { Event: "syn", Verdict: "HoldAndProbe" } => "MPTCP SYN seen (MP_CAPABLE): held while the server is probed",
        { Event: "syn", Verdict: "Pass", Reason: "NotSelected" } => "SYN seen carrying another proxy's MP_PROXY probe: that proxy is selected, passed through untouched",
        { Event: "syn", Verdict: "Pass" or "Defer" } => "SYN seen: passed through untouched",
        { Event: "syn", Verdict: "Intercept" } => "SYN seen: intercepted at once",
        { Event: "syn", Verdict: "Duplicate" } => "a copy of a held SYN: dropped",
        { Event: "syn" } => "SYN seen",
        { Event: "probe", Outcome: "answered", MpCapable: false } => "probe answered: the server speaks plain TCP only",
        { Event: "probe", Outcome: "answered", MpCapable: true, Signal: "Claim" } =>
            "probe answered with MPTCP and a verified MP_PROXY claim: a proxy further on holds the MPTCP side",
        { Event: "probe", Outcome: "answered", MpCapable: true } => "probe answered with MPTCP (by the server or a proxy on the way)",
        { Event: "probe", Outcome: "timed_out" } => "probe timed out: no answer in time, the held SYN passes untouched",
        { Event: "probe", Outcome: "failed" } => "probe failed (refused or unreachable): the held SYN passes untouched",
        { Event: "probe" } => "probe",
        { Event: "hold", Outcome: "Intercept" } => "decision: intercept (this proxy holds the connection)",
        { Event: "hold" } => "hold resolved",
        { Event: "accepted", Token: null } => "plain TCP client leg accepted (this proxy speaks MPTCP upstream)",
        { Event: "accepted" } => "MPTCP client leg accepted (joins name this proxy's token)",
        { Event: "relay" } => "connection closed: bytes each way, subflows of the client leg",
        { Event: "expired" } => "intercepted SYN expired",
        _ => "",
    };
}
