using System.Globalization;
using System.Text.RegularExpressions;

namespace ProxySelection.LabTool.Lab;

/// <summary>
/// Reads what a <c>proxysel run</c> process printed: its decision lines (one per SYN, probe, hold, accept and relayed
/// connection) and the counters of its final line.
/// </summary>
internal static partial class ProxyTrace
{
    /// <summary>The engine's decision lines, in order, with a plain-words gloss for each.</summary>
    public static IReadOnlyList<(string Line, string Gloss)> Events(string output) =>
        [.. Lines(output).Select(l => (l, Gloss(l))).Where(e => e.Item2.Length > 0)];

    /// <summary>The counters of the final <c>proxysel: stopped</c> line (empty when the proxy has not stopped).</summary>
    public static IReadOnlyDictionary<string, double> Counters(string output)
    {
        var line = Lines(output).LastOrDefault(l => l.StartsWith("proxysel: stopped", StringComparison.Ordinal));
        var counters = new Dictionary<string, double>(StringComparer.Ordinal);
        if (line is null)
        {
            return counters;
        }

        foreach (Match m in CounterPattern().Matches(line))
        {
            counters[m.Groups[1].Value] = double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }

        return counters;
    }

    /// <summary>The relay line's fields (<c>up</c>, <c>down</c>, <c>subflows</c>, reason as <c>reason</c>), or null.</summary>
    public static IReadOnlyDictionary<string, string>? Relay(string output)
    {
        var line = Lines(output).FirstOrDefault(l => l.StartsWith("relay ", StringComparison.Ordinal));
        if (line is null)
        {
            return null;
        }

        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match m in FieldPattern().Matches(line))
        {
            fields[m.Groups[1].Value] = m.Groups[2].Value;
        }

        var reason = ReasonPattern().Match(line);
        fields["reason"] = reason.Success ? reason.Groups[1].Value : "?";
        return fields;
    }

    private static IEnumerable<string> Lines(string output) =>
        output.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0);

    private static string Gloss(string line)
    {
        bool Has(string text) => line.Contains(text, StringComparison.Ordinal);
        return line switch
        {
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has("MpJoin") && Has("InterceptJoin") =>
                "a second subflow (MP_JOIN) for a connection this proxy holds: taken over too",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has("MpJoin") && Has("Wait for the accept") =>
                "a second subflow (MP_JOIN) arrived before its connection was accepted: parked until then",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has("MpJoin") =>
                "MP_JOIN SYN seen",
            _ when line.StartsWith("join ", StringComparison.Ordinal) && Has("InterceptJoin") =>
                "the parked MP_JOIN belongs to the held connection: taken over (second subflow)",
            _ when line.StartsWith("join ", StringComparison.Ordinal) => "parked MP_JOIN released",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has(" Tcp: HoldAndProbe") =>
                "plain TCP SYN seen: held while the server is probed (with MPTCP)",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has("HoldAndProbe") =>
                "MPTCP SYN seen (MP_CAPABLE): held while the server is probed",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has(": Pass (NotSelected)") =>
                "SYN seen carrying another proxy's MP_PROXY probe: that proxy is selected, passed through untouched",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has(": Pass") =>
                "SYN seen: passed through untouched",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) && Has(": Intercept") =>
                "SYN seen: intercepted at once",
            _ when line.StartsWith("syn ", StringComparison.Ordinal) => "SYN seen",
            _ when line.StartsWith("probe ", StringComparison.Ordinal) && Has("mp_capable=False") =>
                "probe answered: the server speaks plain TCP only",
            _ when line.StartsWith("probe ", StringComparison.Ordinal) && Has("mp_capable=True") && Has("signal=Claim") =>
                "probe answered with MPTCP and a verified MP_PROXY claim: a proxy further on holds the MPTCP side",
            _ when line.StartsWith("probe ", StringComparison.Ordinal) && Has("mp_capable=True") =>
                "probe answered with MPTCP (by the server or a proxy on the way)",
            _ when line.StartsWith("probe ", StringComparison.Ordinal) => "probe",
            _ when line.StartsWith("hold ", StringComparison.Ordinal) && Has(": Intercept") =>
                "decision: intercept (this proxy holds the connection)",
            _ when line.StartsWith("hold ", StringComparison.Ordinal) => "hold resolved",
            _ when line.StartsWith("accepted ", StringComparison.Ordinal) =>
                "MPTCP client leg accepted (joins name this proxy's token)",
            _ when line.StartsWith("relay ", StringComparison.Ordinal) =>
                "connection closed: bytes each way, subflows of the client leg",
            _ when line.StartsWith("intercepted connection never arrived", StringComparison.Ordinal) => "intercepted SYN expired",
            _ => "",
        };
    }

    [GeneratedRegex(@"\b([a-z_]+)=([0-9]+(?:\.[0-9]+)?)\b")]
    private static partial Regex CounterPattern();

    [GeneratedRegex(@"\b([a-z]+)=([^ ]+)")]
    private static partial Regex FieldPattern();

    [GeneratedRegex(@"^relay [^:]+:[0-9]+ -> [^:]+:[0-9]+: ([A-Za-z]+)")]
    private static partial Regex ReasonPattern();
}
