using System.Diagnostics;
using System.Xml.Linq;

namespace ProxySelection.Host.Tests;

/// <summary>Runs the installed tshark over a pcap and reads its PDML: per packet, the IP/TCP fields and each TCP option's fields.</summary>
internal static class Tshark
{
    public const string Executable = "/usr/bin/tshark";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(120);

    public static IReadOnlyList<TsharkPacket> Decode(string pcapPath, params int[] dataPorts)
    {
        var psi = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[]
        {
            "-r", pcapPath, "-T", "pdml",
            "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
            "-o", "tcp.relative_sequence_numbers:FALSE", "-o", "mptcp.relative_sequence_numbers:FALSE",
            "-o", "mptcp.analyze_mptcp:TRUE",
            // Lone synthetic packets would only raise sequence-analysis warnings ("previous segment not captured").
            "-o", "tcp.analyze_sequence_numbers:FALSE",
        })
        {
            psi.ArgumentList.Add(arg);
        }

        // The payload is not an application protocol: show it as data so no other dissector runs over it.
        foreach (var port in dataPorts)
        {
            psi.ArgumentList.Add("-d");
            psi.ArgumentList.Add($"tcp.port=={port},data");
        }

        using var process = Process.Start(psi) ?? throw new InvalidOperationException("tshark did not start");
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEndAsync();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill();
            throw new TimeoutException($"tshark did not finish within {Timeout}");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"tshark exited {process.ExitCode}: {stderr.Result}");
        }

        return Parse(XDocument.Parse(stdout.Result));
    }

    private static List<TsharkPacket> Parse(XDocument pdml)
    {
        var packets = new List<TsharkPacket>();
        foreach (var packet in pdml.Root!.Elements("packet"))
        {
            var protos = packet.Elements("proto").ToList();
            var fields = new Dictionary<string, List<string>>(StringComparer.Ordinal);
            foreach (var proto in protos.Where(p => (string?)p.Attribute("name") is "ip" or "ipv6" or "tcp"))
            {
                foreach (var field in proto.Descendants("field"))
                {
                    if (field.Ancestors("field").Any(a => (string?)a.Attribute("name") == "tcp.options"))
                    {
                        continue;
                    }

                    Add(fields, (string?)field.Attribute("name") ?? "", (string?)field.Attribute("show") ?? "");
                }
            }

            var options = new List<TsharkOption>();
            var optionsField = packet.Descendants("field").FirstOrDefault(f => (string?)f.Attribute("name") == "tcp.options");
            if (optionsField is not null)
            {
                // Expert items tshark hangs under the option list are not options.
                foreach (var option in optionsField.Elements().Where(e => (string?)e.Attribute("name") != "_ws.expert"))
                {
                    var optionFields = new List<KeyValuePair<string, string>>();
                    foreach (var field in option.Descendants("field"))
                    {
                        optionFields.Add(new((string?)field.Attribute("name") ?? "", (string?)field.Attribute("show") ?? ""));
                    }

                    options.Add(new TsharkOption((string?)option.Attribute("name") ?? "", (int?)option.Attribute("pos") ?? -1, optionFields));
                }
            }

            // Error and warning expert items count; chat and note (e.g. "SYN without MSS") do not.
            var problems = packet.Descendants()
                .Where(e => ((string?)e.Attribute("name") ?? "").StartsWith("_ws.malformed", StringComparison.Ordinal)
                            || ((string?)e.Attribute("name") == "_ws.expert"
                                && e.Descendants().Any(d => (string?)d.Attribute("name") == "_ws.expert.severity"
                                                            && (string?)d.Attribute("show") is not ("2097152" or "4194304"))))
                .Select(e => (string?)e.Attribute("showname") ?? (string?)e.Attribute("name") ?? "")
                .ToList();
            packets.Add(new TsharkPacket(fields, options, problems));
        }

        return packets;
    }

    private static void Add(Dictionary<string, List<string>> map, string key, string value)
    {
        if (!map.TryGetValue(key, out var list))
        {
            map[key] = list = [];
        }

        list.Add(value);
    }
}

/// <summary>One packet of tshark's PDML: top-level IP/TCP fields (by name, every occurrence), options in wire order, and
/// expert items above "note" severity plus any malformed-packet marker.</summary>
internal sealed record TsharkPacket(
    IReadOnlyDictionary<string, List<string>> Fields,
    IReadOnlyList<TsharkOption> Options,
    IReadOnlyList<string> Problems)
{
    public string? First(string name) => Fields.TryGetValue(name, out var list) && list.Count > 0 ? list[0] : null;
}

/// <summary>One TCP option: the element name (tcp.options.mss, mptcp, ...), its offset in the frame, and every field under it.</summary>
internal sealed record TsharkOption(string Element, int Position, IReadOnlyList<KeyValuePair<string, string>> Fields)
{
    public IEnumerable<string> All(string name) => Fields.Where(f => f.Key == name).Select(f => f.Value);

    public string? First(string name) => All(name).FirstOrDefault();
}
