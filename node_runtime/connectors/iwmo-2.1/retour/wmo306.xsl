<?xml version="1.0" encoding="UTF-8"?>
<!--
  WMO306 "Start Wmo-ondersteuning Retour" (BerichtCode 419) answering a WMO305 (418).

  Input: a copy of the WMO305 in which the knooppunt appended <kp:RetourCode> elements as
  the last children of each element a failing rule points at. Output: the WMO306, valid
  against wmo306.xsd, carrying per Header / Client / StartProduct the codes attached to that
  element (or to a descendant that has no RetourCodes of its own), otherwise $default-code.
  Codes attached to the root or to Clienten are reported on the Header.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:src="http://www.istandaarden.nl/iwmo/2_1/wmo305/schema/2_1"
    xmlns:wmo306="http://www.istandaarden.nl/iwmo/2_1/wmo306/schema/2_1"
    xmlns:iwmo="http://www.istandaarden.nl/iwmo/2_1/basisschema/schema/2_1"
    xmlns:kp="urn:knooppunt:retour"
    exclude-result-prefixes="src kp">

  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:strip-space elements="*"/>

  <xsl:param name="retour-id" select="''"/>
  <xsl:param name="retour-date" select="''"/>
  <xsl:param name="default-code" select="'0200'"/>

  <!-- Each code belongs to its nearest ancestor that carries RetourCodes in the retour; the
       Header when there is none (document order puts the Header before every other carrier). -->
  <xsl:key name="codes" match="kp:RetourCode"
      use="generate-id((ancestor::*[self::src:Header or self::src:Client or self::src:StartProduct][1]
                        | /src:Bericht/src:Header)[last()])"/>
  <xsl:key name="code-values" match="kp:RetourCode"
      use="concat(generate-id((ancestor::*[self::src:Header or self::src:Client or self::src:StartProduct][1]
                               | /src:Bericht/src:Header)[last()]), '|', normalize-space(.))"/>

  <xsl:template match="/">
    <xsl:apply-templates select="src:Bericht"/>
  </xsl:template>

  <xsl:template match="src:Bericht">
    <wmo306:Bericht>
      <xsl:apply-templates select="src:Header"/>
      <xsl:apply-templates select="src:Clienten"/>
    </wmo306:Bericht>
  </xsl:template>

  <xsl:template match="src:Header">
    <wmo306:Header>
      <wmo306:BerichtCode>419</wmo306:BerichtCode>
      <xsl:apply-templates select="src:BerichtVersie | src:BerichtSubversie | src:Afzender
                                   | src:Ontvanger | src:BerichtIdentificatie"/>
      <wmo306:IdentificatieRetour><xsl:value-of select="$retour-id"/></wmo306:IdentificatieRetour>
      <wmo306:DagtekeningRetour><xsl:value-of select="$retour-date"/></wmo306:DagtekeningRetour>
      <xsl:call-template name="retourcodes"/>
    </wmo306:Header>
  </xsl:template>

  <!-- Record classes that carry RetourCodes in the WMO306. -->
  <xsl:template match="src:Client | src:StartProduct">
    <xsl:element name="wmo306:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo306/schema/2_1">
      <xsl:apply-templates select="*"/>
      <xsl:call-template name="retourcodes"/>
    </xsl:element>
  </xsl:template>

  <!-- Any other element of the message namespace: same local name in the retour namespace.
       node() copies text and elements as '* | text()' would (comments and processing
       instructions have built-in templates that output nothing), without a union to sort;
       the namespace is literal rather than a variable: both make the retour cheaper. -->
  <xsl:template match="src:*">
    <xsl:element name="wmo306:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo306/schema/2_1">
      <xsl:apply-templates select="node()"/>
    </xsl:element>
  </xsl:template>

  <!-- Shared data types (basisschema) keep their namespace. -->
  <xsl:template match="iwmo:*">
    <xsl:element name="iwmo:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/basisschema/schema/2_1">
      <xsl:apply-templates select="node()"/>
    </xsl:element>
  </xsl:template>

  <!-- The node's annotations and anything foreign are never copied. -->
  <xsl:template match="*"/>

  <xsl:template name="retourcodes">
    <xsl:variable name="owner" select="generate-id(.)"/>
    <xsl:variable name="codes" select="key('codes', $owner)"/>
    <wmo306:RetourCodes>
      <xsl:choose>
        <xsl:when test="$codes">
          <xsl:for-each select="$codes">
            <xsl:if test="generate-id(.) = generate-id(key('code-values', concat($owner, '|', normalize-space(.)))[1])">
              <wmo306:RetourCode><xsl:value-of select="normalize-space(.)"/></wmo306:RetourCode>
            </xsl:if>
          </xsl:for-each>
        </xsl:when>
        <xsl:otherwise>
          <wmo306:RetourCode><xsl:value-of select="$default-code"/></wmo306:RetourCode>
        </xsl:otherwise>
      </xsl:choose>
    </wmo306:RetourCodes>
  </xsl:template>

</xsl:stylesheet>
