using System.Globalization;
using System.Text;

namespace ProxySelection.Engine.Diagnostics;

/// <summary>
/// One line of text for a <see cref="ProxyEvent"/>, for people (the demo's trace, test failure messages). Programs read
/// the event's fields; this text is for display only and may change.
/// </summary>
public static class ProxyEventText
{
    public static string Format(ProxyEvent e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var text = CultureInfo.InvariantCulture;
        return e.Event switch
        {
            "syn" => string.Create(text, $"syn {e.Client} -> {e.Destination} {e.Kind}{(e.Token is null ? "" : " token=" + e.Token)}: {e.Verdict} ({e.Reason})"),
            "probe" => string.Create(text, $"probe {e.ProbeId} to {e.Destination}: {e.Outcome}, mp_capable={e.MpCapable}{(e.Signal is null ? "" : $" signal={e.Signal} proxy={e.SignalProxy}")}"),
            "hold" => string.Create(text, $"hold {e.Client} -> {e.Destination}: {e.Outcome} ({e.Reason}) after {e.Milliseconds:F1} ms"),
            "join" => string.Create(text, $"join {e.Client} -> {e.Destination} token={e.Token}: {e.Verdict} ({e.Reason}, waited)"),
            "accepted" => string.Create(text, $"accepted {e.Client} -> {e.Destination} {(e.Token is null ? "tcp" : "token=" + e.Token)}"),
            "expired" => string.Create(text, $"expired {e.Client} -> {e.Destination}: {e.Reason}"),
            "relay" => string.Create(text,
                $"relay {e.Client} -> {e.Destination}: {e.Reason} up={e.Up} down={e.Down} subflows={e.Subflows} upstream_subflows={e.UpstreamSubflows} client={e.ClientMptcp} upstream={e.UpstreamMptcp} connect={Connect(e.Connect, e.ConnectMilliseconds)}, lasted {e.Milliseconds:F0} ms"),
            "stopped" => "stopped " + Counters(e),
            _ => e.Event,
        };
    }

    /// <summary>
    /// A relay's upstream connect: its status and how long the connect took (not the connection's lifetime, which the
    /// line gives after it); without a time the leg was connected before the relay (an adopted probe).
    /// </summary>
    public static string Connect(string? status, double? milliseconds) => milliseconds is { } ms
        ? string.Create(CultureInfo.InvariantCulture, $"{status} in {ms:F1} ms")
        : status + " (the probe's connection)";

    private static string Counters(ProxyEvent e)
    {
        var builder = new StringBuilder();
        foreach (var (name, value) in e.Counters ?? new Dictionary<string, long>())
        {
            builder.Append(CultureInfo.InvariantCulture, $"{name}={value} ");
        }

        return builder.ToString().TrimEnd();
    }
}
