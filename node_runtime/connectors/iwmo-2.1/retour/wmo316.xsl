<?xml version="1.0" encoding="UTF-8"?>
<!--
  WMO316 "Verzoek om toewijzing Wmo-ondersteuning Retour" (BerichtCode 445) answering a
  WMO315 (444).

  Input: a copy of the WMO315 in which the knooppunt appended <kp:RetourCode> elements as
  the last children of each element a failing rule points at. Output: the WMO316, valid
  against wmo316.xsd, carrying per Header / Client / Product the codes attached to that
  element (or to a descendant that has no RetourCodes of its own), otherwise $default-code.
  Codes attached to the root or to Clienten are reported on the Header.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:src="http://www.istandaarden.nl/iwmo/2_1/wmo315/schema/2_1"
    xmlns:wmo316="http://www.istandaarden.nl/iwmo/2_1/wmo316/schema/2_1"
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
      use="generate-id((ancestor::*[self::src:Header or self::src:Client or self::src:Product[parent::src:Producten]][1]
                        | /src:Bericht/src:Header)[last()])"/>
  <xsl:key name="code-values" match="kp:RetourCode"
      use="concat(generate-id((ancestor::*[self::src:Header or self::src:Client or self::src:Product[parent::src:Producten]][1]
                               | /src:Bericht/src:Header)[last()]), '|', normalize-space(.))"/>

  <xsl:template match="/">
    <xsl:apply-templates select="src:Bericht"/>
  </xsl:template>

  <xsl:template match="src:Bericht">
    <wmo316:Bericht>
      <xsl:apply-templates select="src:Header"/>
      <xsl:apply-templates select="src:Clienten"/>
    </wmo316:Bericht>
  </xsl:template>

  <xsl:template match="src:Header">
    <wmo316:Header>
      <wmo316:BerichtCode>445</wmo316:BerichtCode>
      <xsl:apply-templates select="src:BerichtVersie | src:BerichtSubversie | src:Afzender
                                   | src:Ontvanger | src:BerichtIdentificatie"/>
      <wmo316:IdentificatieRetour><xsl:value-of select="$retour-id"/></wmo316:IdentificatieRetour>
      <wmo316:DagtekeningRetour><xsl:value-of select="$retour-date"/></wmo316:DagtekeningRetour>
      <xsl:call-template name="retourcodes"/>
    </wmo316:Header>
  </xsl:template>

  <!-- Record classes that carry RetourCodes in the WMO316. -->
  <xsl:template match="src:Client | src:Producten/src:Product">
    <xsl:element name="wmo316:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo316/schema/2_1">
      <xsl:apply-templates select="*"/>
      <xsl:call-template name="retourcodes"/>
    </xsl:element>
  </xsl:template>

  <!-- Any other element of the message namespace: same local name in the retour namespace.
       node() copies text and elements as '* | text()' would (comments and processing
       instructions have built-in templates that output nothing), without a union to sort;
       the namespace is literal rather than a variable: both make the retour cheaper. -->
  <xsl:template match="src:*">
    <xsl:element name="wmo316:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo316/schema/2_1">
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
    <wmo316:RetourCodes>
      <xsl:choose>
        <xsl:when test="$codes">
          <xsl:for-each select="$codes">
            <xsl:if test="generate-id(.) = generate-id(key('code-values', concat($owner, '|', normalize-space(.)))[1])">
              <wmo316:RetourCode><xsl:value-of select="normalize-space(.)"/></wmo316:RetourCode>
            </xsl:if>
          </xsl:for-each>
        </xsl:when>
        <xsl:otherwise>
          <wmo316:RetourCode><xsl:value-of select="$default-code"/></wmo316:RetourCode>
        </xsl:otherwise>
      </xsl:choose>
    </wmo316:RetourCodes>
  </xsl:template>

  <!-- BEGIN generated literal templates (tests/connector/retour_templates.py; do not edit):
       the same copies as the generic src:* and iwmo:* templates, as literal result
       elements, which libxslt instantiates without evaluating a name per element. -->
  <xsl:template match="src:Aanbieder"><wmo316:Aanbieder><xsl:apply-templates select="node()"/></wmo316:Aanbieder></xsl:template>
  <xsl:template match="src:Afzender"><wmo316:Afzender><xsl:apply-templates select="node()"/></wmo316:Afzender></xsl:template>
  <xsl:template match="src:BerichtCode"><wmo316:BerichtCode><xsl:apply-templates select="node()"/></wmo316:BerichtCode></xsl:template>
  <xsl:template match="src:BerichtIdentificatie"><wmo316:BerichtIdentificatie><xsl:apply-templates select="node()"/></wmo316:BerichtIdentificatie></xsl:template>
  <xsl:template match="src:BerichtSubversie"><wmo316:BerichtSubversie><xsl:apply-templates select="node()"/></wmo316:BerichtSubversie></xsl:template>
  <xsl:template match="src:BerichtVersie"><wmo316:BerichtVersie><xsl:apply-templates select="node()"/></wmo316:BerichtVersie></xsl:template>
  <xsl:template match="src:BeschikkingIngangsdatum"><wmo316:BeschikkingIngangsdatum><xsl:apply-templates select="node()"/></wmo316:BeschikkingIngangsdatum></xsl:template>
  <xsl:template match="src:BeschikkingNummer"><wmo316:BeschikkingNummer><xsl:apply-templates select="node()"/></wmo316:BeschikkingNummer></xsl:template>
  <xsl:template match="src:Bsn"><wmo316:Bsn><xsl:apply-templates select="node()"/></wmo316:Bsn></xsl:template>
  <xsl:template match="src:Clienten"><wmo316:Clienten><xsl:apply-templates select="node()"/></wmo316:Clienten></xsl:template>
  <xsl:template match="src:Geboortedatum"><wmo316:Geboortedatum><xsl:apply-templates select="node()"/></wmo316:Geboortedatum></xsl:template>
  <xsl:template match="src:Geslacht"><wmo316:Geslacht><xsl:apply-templates select="node()"/></wmo316:Geslacht></xsl:template>
  <xsl:template match="src:Naam"><wmo316:Naam><xsl:apply-templates select="node()"/></wmo316:Naam></xsl:template>
  <xsl:template match="src:Omvang"><wmo316:Omvang><xsl:apply-templates select="node()"/></wmo316:Omvang></xsl:template>
  <xsl:template match="src:Ontvanger"><wmo316:Ontvanger><xsl:apply-templates select="node()"/></wmo316:Ontvanger></xsl:template>
  <xsl:template match="src:Product"><wmo316:Product><xsl:apply-templates select="node()"/></wmo316:Product></xsl:template>
  <xsl:template match="src:Producten"><wmo316:Producten><xsl:apply-templates select="node()"/></wmo316:Producten></xsl:template>
  <xsl:template match="src:Raamcontract"><wmo316:Raamcontract><xsl:apply-templates select="node()"/></wmo316:Raamcontract></xsl:template>
  <xsl:template match="src:ReferentieAanbieder"><wmo316:ReferentieAanbieder><xsl:apply-templates select="node()"/></wmo316:ReferentieAanbieder></xsl:template>
  <xsl:template match="src:ToewijzingEinddatum"><wmo316:ToewijzingEinddatum><xsl:apply-templates select="node()"/></wmo316:ToewijzingEinddatum></xsl:template>
  <xsl:template match="src:ToewijzingIngangsdatum"><wmo316:ToewijzingIngangsdatum><xsl:apply-templates select="node()"/></wmo316:ToewijzingIngangsdatum></xsl:template>
  <xsl:template match="src:Verwijzer"><wmo316:Verwijzer><xsl:apply-templates select="node()"/></wmo316:Verwijzer></xsl:template>
  <xsl:template match="iwmo:AanduidingWoonadres"><iwmo:AanduidingWoonadres><xsl:apply-templates select="node()"/></iwmo:AanduidingWoonadres></xsl:template>
  <xsl:template match="iwmo:Begindatum"><iwmo:Begindatum><xsl:apply-templates select="node()"/></iwmo:Begindatum></xsl:template>
  <xsl:template match="iwmo:Categorie"><iwmo:Categorie><xsl:apply-templates select="node()"/></iwmo:Categorie></xsl:template>
  <xsl:template match="iwmo:Code"><iwmo:Code><xsl:apply-templates select="node()"/></iwmo:Code></xsl:template>
  <xsl:template match="iwmo:Dagtekening"><iwmo:Dagtekening><xsl:apply-templates select="node()"/></iwmo:Dagtekening></xsl:template>
  <xsl:template match="iwmo:Datum"><iwmo:Datum><xsl:apply-templates select="node()"/></iwmo:Datum></xsl:template>
  <xsl:template match="iwmo:DatumGebruik"><iwmo:DatumGebruik><xsl:apply-templates select="node()"/></iwmo:DatumGebruik></xsl:template>
  <xsl:template match="iwmo:Eenheid"><iwmo:Eenheid><xsl:apply-templates select="node()"/></iwmo:Eenheid></xsl:template>
  <xsl:template match="iwmo:Einddatum"><iwmo:Einddatum><xsl:apply-templates select="node()"/></iwmo:Einddatum></xsl:template>
  <xsl:template match="iwmo:Frequentie"><iwmo:Frequentie><xsl:apply-templates select="node()"/></iwmo:Frequentie></xsl:template>
  <xsl:template match="iwmo:Geslachtsnaam"><iwmo:Geslachtsnaam><xsl:apply-templates select="node()"/></iwmo:Geslachtsnaam></xsl:template>
  <xsl:template match="iwmo:Grondslag01"><iwmo:Grondslag01><xsl:apply-templates select="node()"/></iwmo:Grondslag01></xsl:template>
  <xsl:template match="iwmo:Grondslag02"><iwmo:Grondslag02><xsl:apply-templates select="node()"/></iwmo:Grondslag02></xsl:template>
  <xsl:template match="iwmo:Huis"><iwmo:Huis><xsl:apply-templates select="node()"/></iwmo:Huis></xsl:template>
  <xsl:template match="iwmo:Huisletter"><iwmo:Huisletter><xsl:apply-templates select="node()"/></iwmo:Huisletter></xsl:template>
  <xsl:template match="iwmo:Huisnummer"><iwmo:Huisnummer><xsl:apply-templates select="node()"/></iwmo:Huisnummer></xsl:template>
  <xsl:template match="iwmo:HuisnummerToevoeging"><iwmo:HuisnummerToevoeging><xsl:apply-templates select="node()"/></iwmo:HuisnummerToevoeging></xsl:template>
  <xsl:template match="iwmo:Identificatie"><iwmo:Identificatie><xsl:apply-templates select="node()"/></iwmo:Identificatie></xsl:template>
  <xsl:template match="iwmo:LandCode"><iwmo:LandCode><xsl:apply-templates select="node()"/></iwmo:LandCode></xsl:template>
  <xsl:template match="iwmo:Landnummer"><iwmo:Landnummer><xsl:apply-templates select="node()"/></iwmo:Landnummer></xsl:template>
  <xsl:template match="iwmo:Naam"><iwmo:Naam><xsl:apply-templates select="node()"/></iwmo:Naam></xsl:template>
  <xsl:template match="iwmo:NaamGebruik"><iwmo:NaamGebruik><xsl:apply-templates select="node()"/></iwmo:NaamGebruik></xsl:template>
  <xsl:template match="iwmo:Partnernaam"><iwmo:Partnernaam><xsl:apply-templates select="node()"/></iwmo:Partnernaam></xsl:template>
  <xsl:template match="iwmo:Plaatsnaam"><iwmo:Plaatsnaam><xsl:apply-templates select="node()"/></iwmo:Plaatsnaam></xsl:template>
  <xsl:template match="iwmo:Postcode"><iwmo:Postcode><xsl:apply-templates select="node()"/></iwmo:Postcode></xsl:template>
  <xsl:template match="iwmo:Straatnaam"><iwmo:Straatnaam><xsl:apply-templates select="node()"/></iwmo:Straatnaam></xsl:template>
  <xsl:template match="iwmo:Taal"><iwmo:Taal><xsl:apply-templates select="node()"/></iwmo:Taal></xsl:template>
  <xsl:template match="iwmo:Telefoon01"><iwmo:Telefoon01><xsl:apply-templates select="node()"/></iwmo:Telefoon01></xsl:template>
  <xsl:template match="iwmo:Telefoon02"><iwmo:Telefoon02><xsl:apply-templates select="node()"/></iwmo:Telefoon02></xsl:template>
  <xsl:template match="iwmo:Telefoonnummer"><iwmo:Telefoonnummer><xsl:apply-templates select="node()"/></iwmo:Telefoonnummer></xsl:template>
  <xsl:template match="iwmo:Type"><iwmo:Type><xsl:apply-templates select="node()"/></iwmo:Type></xsl:template>
  <xsl:template match="iwmo:Volume"><iwmo:Volume><xsl:apply-templates select="node()"/></iwmo:Volume></xsl:template>
  <xsl:template match="iwmo:Voorletters"><iwmo:Voorletters><xsl:apply-templates select="node()"/></iwmo:Voorletters></xsl:template>
  <xsl:template match="iwmo:Voornamen"><iwmo:Voornamen><xsl:apply-templates select="node()"/></iwmo:Voornamen></xsl:template>
  <xsl:template match="iwmo:Voorvoegsel"><iwmo:Voorvoegsel><xsl:apply-templates select="node()"/></iwmo:Voorvoegsel></xsl:template>
  <xsl:template match="iwmo:Vorm"><iwmo:Vorm><xsl:apply-templates select="node()"/></iwmo:Vorm></xsl:template>
  <!-- END generated literal templates -->

</xsl:stylesheet>
