using System.Net;
using System.Text.Json;

namespace ProxySelection.Host.Tests;

/// <summary>
/// Compares one packet of our decode output with tshark's PDML for it: IP/TCP header fields, every option's kind and
/// length, every tcp.options.mptcp.* field both ways, and (optionally) the generated mptcp.* items.
/// </summary>
internal static class TsharkComparison
{
    /// <summary>Fields we print that tshark 4.0.17 does not, and why.</summary>
    internal static readonly Dictionary<string, string> OursOnly = new(StringComparer.Ordinal)
    {
        ["DSS/checksum"] = "tshark 4.0.17's length test wants two bytes more than a DSS with checksum holds (README quirks)",
    };

    /// <summary>Generated tshark items (not option fields) we do not compare, and why.</summary>
    internal static readonly Dictionary<string, string> TsharkOnly = new(StringComparer.Ordinal)
    {
        ["mptcp.ack"] = "4-byte data ACKs are expanded from connection state; 8-byte ones are compared",
        ["mptcp.dss.dsn"] = "4-byte DSNs are expanded from connection state; 8-byte ones are compared",
        ["mptcp.connection.unsupported_algorithm"] = "tshark 4.0.17 adds it wrongly when flag C is set (README quirks)",
        ["mptcp.connection.echoed_key_mismatch"] = "connection-level analysis: our packets are independent flows",
    };

    public static List<string> Compare(JsonElement ours, TsharkPacket theirs, bool compareAnalysis)
    {
        var mismatches = new List<string>();
        bool v6 = ours.GetProperty("ip_version").GetInt32() == 6;
        Expect(mismatches, "src", ours.GetProperty("src"), theirs.First(v6 ? "ipv6.src" : "ip.src"), "ipv4");
        Expect(mismatches, "dst", ours.GetProperty("dst"), theirs.First(v6 ? "ipv6.dst" : "ip.dst"), "ipv4");
        Expect(mismatches, "sport", ours.GetProperty("sport"), theirs.First("tcp.srcport"));
        Expect(mismatches, "dport", ours.GetProperty("dport"), theirs.First("tcp.dstport"));
        Expect(mismatches, "seq", ours.GetProperty("seq"), theirs.First("tcp.seq_raw"));
        Expect(mismatches, "ack", ours.GetProperty("ack"), theirs.First("tcp.ack_raw"));
        Expect(mismatches, "payload_len", ours.GetProperty("payload_len"), theirs.First("tcp.len"));
        Expect(mismatches, "tcp_flags_value", ours.GetProperty("tcp_flags_value"), theirs.First("tcp.flags"));
        Expect(mismatches, "tcp_header_length", ours.GetProperty("tcp_header_length"), theirs.First("tcp.hdr_len"));
        Expect(mismatches, "window", ours.GetProperty("window"), theirs.First("tcp.window_size_value"));
        Expect(mismatches, "tcp_checksum", ours.GetProperty("tcp_checksum"), theirs.First("tcp.checksum"));
        Expect(mismatches, "urgent_pointer", ours.GetProperty("urgent_pointer"), theirs.First("tcp.urgent_pointer"));
        var ip = ours.GetProperty("ip");
        var ipFields = v6
            ? new[] { ("traffic_class", "ipv6.tclass"), ("flow_label", "ipv6.flow"), ("payload_length", "ipv6.plen"), ("next_header", "ipv6.nxt"), ("hop_limit", "ipv6.hlim") }
            : new[]
            {
                ("header_length", "ip.hdr_len"), ("dscp", "ip.dsfield.dscp"), ("ecn", "ip.dsfield.ecn"), ("total_length", "ip.len"),
                ("id", "ip.id"), ("flags", "ip.flags"), ("fragment_offset", "ip.frag_offset"), ("ttl", "ip.ttl"), ("checksum", "ip.checksum"),
                ("protocol", "ip.proto"),
            };
        foreach (var (ourName, theirName) in ipFields)
        {
            Expect(mismatches, $"ip.{ourName}", ip.GetProperty(ourName), theirs.First(theirName));
        }

        // tshark: 1 good, 0 bad.
        var ourTcpStatus = ours.GetProperty("tcp_checksum_status").GetString() == "Checksum Status: Good" ? "1" : "0";
        if (theirs.First("tcp.checksum.status") != ourTcpStatus)
        {
            mismatches.Add($"TCP checksum status: ours {ourTcpStatus}, tshark {theirs.First("tcp.checksum.status")}");
        }

        if (!v6)
        {
            var ourIpStatus = ours.GetProperty("ip").GetProperty("checksum_status").GetString() == "Good" ? "1" : "0";
            if (theirs.First("ip.checksum.status") != ourIpStatus)
            {
                mismatches.Add($"IPv4 checksum status: ours {ourIpStatus}, tshark {theirs.First("ip.checksum.status")}");
            }
        }

        var ourOptions = ours.GetProperty("options").EnumerateArray().ToList();
        if (ourOptions.Count != theirs.Options.Count)
        {
            mismatches.Add($"option count: ours {ourOptions.Count}, tshark {theirs.Options.Count}");
            return mismatches;
        }

        for (int i = 0; i < ourOptions.Count; i++)
        {
            CompareOption(mismatches, $"options[{i}]", ourOptions[i], theirs.Options[i], compareAnalysis);
        }

        return mismatches;
    }

    private static void CompareOption(List<string> mismatches, string path, JsonElement ours, TsharkOption theirs, bool compareAnalysis)
    {
        Expect(mismatches, $"{path}.kind", ours.GetProperty("kind"), theirs.First("tcp.option_kind"));
        if (ours.TryGetProperty("length", out var length))
        {
            Expect(mismatches, $"{path}.length", length, theirs.First("tcp.option_len"));
        }

        if (!ours.TryGetProperty("fields", out var fields))
        {
            return;
        }

        var subtype = ours.GetProperty("subtype").GetString();
        const string Prefix = "tcp.options.mptcp.";
        var theirFields = theirs.Fields.Where(f => f.Key.StartsWith(Prefix, StringComparison.Ordinal))
            .GroupBy(f => f.Key[Prefix.Length..])
            .ToDictionary(g => g.Key, g => g.Select(f => f.Value).ToList());
        foreach (var (name, values) in theirFields)
        {
            if (!fields.TryGetProperty(name, out var our))
            {
                mismatches.Add($"{path}.fields.{name}: missing, tshark {string.Join(",", values)}");
                continue;
            }

            var ourValues = our.ValueKind == JsonValueKind.Array ? our.EnumerateArray().ToList() : [our];
            if (ourValues.Count != values.Count)
            {
                mismatches.Add($"{path}.fields.{name}: ours {our.GetRawText()}, tshark {string.Join(",", values)}");
                continue;
            }

            for (int i = 0; i < values.Count; i++)
            {
                Expect(mismatches, $"{path}.fields.{name}", ourValues[i], values[i], name);
            }
        }

        foreach (var field in fields.EnumerateObject())
        {
            if (!theirFields.ContainsKey(field.Name) && !OursOnly.ContainsKey($"{subtype}/{field.Name}"))
            {
                mismatches.Add($"{path}.fields.{field.Name}: ours {field.Value.GetRawText()}, tshark shows no such field");
            }
        }

        if (!compareAnalysis)
        {
            return;
        }

        ours.TryGetProperty("analysis", out var analysis);
        foreach (var (name, value) in theirs.Fields.Where(f => f.Key.StartsWith("mptcp.", StringComparison.Ordinal)))
        {
            if (analysis.ValueKind == JsonValueKind.Object && analysis.TryGetProperty(name, out var our))
            {
                Expect(mismatches, $"{path}.analysis.{name}", our, value, name);
            }
            else if (!TsharkOnly.ContainsKey(name))
            {
                mismatches.Add($"{path}.analysis.{name}: missing, tshark {value}");
            }
        }
    }

    private static void Expect(List<string> mismatches, string path, JsonElement ours, string? show, string field = "")
    {
        if (show is null)
        {
            mismatches.Add($"{path}: tshark shows nothing, ours {ours.GetRawText()}");
            return;
        }

        var a = NormalizeOurs(ours, field);
        var b = NormalizeShow(show, field);
        if (a != b)
        {
            mismatches.Add($"{path}: ours {ours.GetRawText()}, tshark {show}");
        }
    }

    private static string NormalizeOurs(JsonElement value, string field) => value.ValueKind switch
    {
        JsonValueKind.True => "1",
        JsonValueKind.False => "0",
        JsonValueKind.String when field is "ipv4" or "ipv6" => IPAddress.Parse(value.GetString()!).ToString(),
        JsonValueKind.String when value.GetString()!.StartsWith("0x", StringComparison.Ordinal) => NormalizeShow(value.GetString()!, field),
        JsonValueKind.String => value.GetString()!.ToLowerInvariant(),
        _ => value.GetRawText(),
    };

    /// <summary>PDML "show" text: 0x-hex integers, True/False, colon-separated bytes.</summary>
    private static string NormalizeShow(string show, string field)
    {
        if (field is "ipv4" or "ipv6")
        {
            return IPAddress.TryParse(show, out var address) ? address.ToString() : show;
        }

        if (field == "sendhmac")
        {
            return show.Replace(":", "", StringComparison.Ordinal).ToLowerInvariant();
        }

        if (show.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            return ulong.Parse(show.AsSpan(2), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture)
                .ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        return show switch
        {
            "True" => "1",
            "False" => "0",
            _ => show,
        };
    }

}
