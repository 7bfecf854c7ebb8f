using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using ProxySelection.Lab;

namespace ProxySelection.Bench;

/// <summary>What one wrk run measured.</summary>
public sealed record WrkResult(double RequestsPerSecond, double? P50Ms, double? P99Ms, long Requests, long SocketErrors, long Non2xx);

/// <summary>wrk with <c>Connection: close</c>: every request is a new connection, so requests/s is connections/s.</summary>
internal static partial class Wrk
{
    public static async Task<WrkResult> RunAsync(NetNamespace client, IPEndPoint target, string path, int seconds, bool mptcp)
    {
        // 1 thread, 16 connections: the client must not starve the relay of one of the two cores.
        List<string> args =
        [
            "wrk", "-t1", "-c16", string.Create(CultureInfo.InvariantCulture, $"-d{seconds}s"), "--timeout", "2s", "--latency",
            "-H", "Connection: close", $"http://{target}{path}",
        ];
        var timeout = TimeSpan.FromSeconds(seconds + 20);
        var r = mptcp
            ? await client.RunAsync("mptcpize", ["run", .. args], timeout).ConfigureAwait(false)
            : await client.RunAsync(args[0], args.Skip(1), timeout).ConfigureAwait(false);
        r.EnsureSuccess();
        return Parse(r.StdOut);
    }

    internal static WrkResult Parse(string output)
    {
        var rate = RatePattern().Match(output);
        if (!rate.Success)
        {
            throw new LabException($"wrk output not understood: {output}");
        }
        var requests = RequestsPattern().Match(output);
        long errors = 0;
        var socketErrors = SocketErrorsPattern().Match(output);
        if (socketErrors.Success)
        {
            for (int g = 1; g <= 4; g++)
            {
                errors += long.Parse(socketErrors.Groups[g].Value, CultureInfo.InvariantCulture);
            }
        }
        var non2xx = Non2xxPattern().Match(output);
        return new WrkResult(
            double.Parse(rate.Groups[1].Value, CultureInfo.InvariantCulture),
            Percentile(output, "50%"),
            Percentile(output, "99%"),
            requests.Success ? long.Parse(requests.Groups[1].Value, CultureInfo.InvariantCulture) : 0,
            errors,
            non2xx.Success ? long.Parse(non2xx.Groups[1].Value, CultureInfo.InvariantCulture) : 0);
    }

    private static double? Percentile(string output, string label)
    {
        foreach (var line in output.Split('\n'))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length == 2 && f[0] == label)
            {
                var m = DurationPattern().Match(f[1]);
                if (m.Success)
                {
                    double v = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                    return m.Groups[2].Value switch
                    {
                        "us" => v / 1000,
                        "ms" => v,
                        "s" => v * 1000,
                        "m" => v * 60_000,
                        _ => null,
                    };
                }
            }
        }
        return null;
    }

    [GeneratedRegex(@"Requests/sec:\s+([0-9.]+)")]
    private static partial Regex RatePattern();

    [GeneratedRegex(@"([0-9]+) requests in")]
    private static partial Regex RequestsPattern();

    [GeneratedRegex(@"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)")]
    private static partial Regex SocketErrorsPattern();

    [GeneratedRegex(@"Non-2xx or 3xx responses: ([0-9]+)")]
    private static partial Regex Non2xxPattern();

    [GeneratedRegex(@"^([0-9.]+)(us|ms|s|m)$")]
    private static partial Regex DurationPattern();
}
