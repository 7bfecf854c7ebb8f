namespace ProxySelection.Wire.Json;

/// <summary>A packet typed or pasted as hex (<c>proxysel decode --hex</c>).</summary>
public static class HexText
{
    /// <summary>Parses hex, ignoring whitespace, ':' separators and a leading 0x; <paramref name="badIndex"/> is the first bad character.</summary>
    public static bool TryParse(string text, out byte[] bytes, out int badIndex)
    {
        bytes = [];
        int start = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? 2 : 0;
        var digits = new List<byte>(text.Length);
        int pendingIndex = -1;
        int high = -1;
        for (int i = start; i < text.Length; i++)
        {
            char c = text[i];
            if (char.IsWhiteSpace(c) || c == ':')
            {
                continue;
            }

            int value = HexValue(c);
            if (value < 0)
            {
                badIndex = i;
                return false;
            }

            if (high < 0)
            {
                high = value;
                pendingIndex = i;
            }
            else
            {
                digits.Add((byte)((high << 4) | value));
                high = -1;
            }
        }

        if (high >= 0)
        {
            badIndex = pendingIndex;
            return false;
        }

        badIndex = -1;
        bytes = [.. digits];
        return true;
    }

    private static int HexValue(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
